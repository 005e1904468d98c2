// A job in which one rank fails while the others wait in a collective: the job must end promptly with the failing
// rank's reason, not hang. Run: mpirun -np 3 comm_abort_probe [--nccl]. Exits non-zero by design.
#include <mpi.h>

#include <cstdio>
#include <string>
#include <thread>

#include "comm/abort.h"
#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/mpi_runtime.h"

int main(int argc, char** argv) {
  using namespace ditrun::comm;
  const bool nccl = argc > 1 && std::string(argv[1]) == "--nccl";
  MpiRuntime mpi(&argc, &argv);
  if (nccl && cuda_device_count() < 1) {
    if (mpi.rank() == 0) std::printf("probe: skipped: no CUDA device on this machine\n");
    return 0;
  }
  if (nccl) select_cuda_device(mpi.local_rank());
  std::vector<int> all(mpi.size());
  for (int r = 0; r < mpi.size(); ++r) all[r] = r;
  Communicators comms({GroupSet{"world", {all}}}, nccl ? Backend::nccl : Backend::mpi);
  auto world = comms.get("world");
  if (mpi.rank() == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    abort_job("probe: rank 1 fails on purpose while its peers wait in an all-reduce", 3);
  }
  // The others block here forever unless the failing rank ends the job.
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) world->barrier();
  std::printf("probe: rank %d was not ended (this is the failure)\n", mpi.rank());
  return 0;
}

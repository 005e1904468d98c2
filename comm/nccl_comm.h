// GPU communicator: NCCL on device memory, every operation queued on the given CUDA stream.
#pragma once
#include <mpi.h>

#include "comm/comm.h"

namespace ditrun::comm {

class NcclComm final : public Comm {
 public:
  // Collective over `group` (an MPI communicator of the same members, kept for host-side barriers): rank 0 makes
  // the NCCL id and broadcasts it over MPI. The current CUDA device must already be selected.
  NcclComm(std::string name, MPI_Comm group);
  ~NcclComm() override;

  const char* backend() const override { return "nccl"; }
  Memory memory() const override { return Memory::device; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Stream s) override;
  void all_gather(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) override;
  void all_to_all(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) override;
  void broadcast(void* buffer, size_t count, DType dtype, int root, Stream s) override;
  std::unique_ptr<Pending> send_recv(const void* send, int dst, void* recv, int src, size_t count, DType dtype,
                                     Stream s) override;
  std::unique_ptr<Pending> send_recv_all(std::span<const Transfer> transfers, DType dtype, Stream s) override;
  void barrier() override;
  void synchronize(Stream s) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ditrun::comm

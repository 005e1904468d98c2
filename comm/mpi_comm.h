// CPU communicator: MPI on host memory. Operations complete before they return.
#pragma once
#include <mpi.h>

#include "comm/comm.h"

namespace ditrun::comm {

class MpiComm final : public Comm {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD).
  MpiComm(std::string name, MPI_Comm comm);
  ~MpiComm() override;

  const char* backend() const override { return "mpi"; }
  Memory memory() const override { return Memory::host; }
  MPI_Comm handle() const { return comm_; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Stream s) override;
  void all_gather(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) override;
  void all_to_all(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) override;
  void broadcast(void* buffer, size_t count, DType dtype, int root, Stream s) override;
  std::unique_ptr<Pending> send_recv(const void* send, int dst, void* recv, int src, size_t count, DType dtype,
                                     Stream s) override;
  void barrier() override;
  void synchronize(Stream) override {}

 private:
  MPI_Comm comm_;
};

// Rank and size of an MPI communicator (checked).
int mpi_rank(MPI_Comm comm);
int mpi_size(MPI_Comm comm);

}  // namespace ditrun::comm

// One communicator per group, same interface on CPU (MPI, host memory) and GPU (NCCL, device memory).
#pragma once
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "model/core/dtype.h"

namespace ditrun::comm {

enum class ReduceOp { sum, max, min };
enum class Memory { host, device };

// A CUDA stream (cudaStream_t) on GPU communicators; ignored by MPI ones, whose operations complete on return.
struct Stream {
  void* handle = nullptr;
};

// An operation in flight (a ring exchange).
class Pending {
 public:
  virtual ~Pending() = default;
  // Makes the operation's completion visible to work on `on`: MPI waits here on the host; NCCL makes the stream
  // `on` wait (no host block).
  virtual void wait(Stream on) = 0;
};

// One send and one receive of send_recv_all (either side may be -1 for none).
struct Transfer {
  const void* send = nullptr;
  int dst = -1;
  void* recv = nullptr;
  int src = -1;
  size_t count = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }
  virtual const char* backend() const = 0;
  virtual Memory memory() const = 0;

  // send may equal recv (in place).
  virtual void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Stream s) = 0;
  // recv holds size() × count_per_rank elements, rank i's block at i × count_per_rank.
  virtual void all_gather(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) = 0;
  // Block i of send goes to rank i; block j of recv comes from rank j. Blocks are count_per_rank elements.
  virtual void all_to_all(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) = 0;
  virtual void broadcast(void* buffer, size_t count, DType dtype, int root, Stream s) = 0;
  // Sends count elements to dst and receives count elements from src (either may be -1 for none), without
  // blocking the caller: the ring exchange that runs while the current K/V block computes.
  virtual std::unique_ptr<Pending> send_recv(const void* send, int dst, void* recv, int src, size_t count,
                                             DType dtype, Stream s) = 0;
  // Several send_recv at once, all in flight together; the result completes when all have. NCCL posts them as
  // one group (one launch, not one per transfer: the VAE's halo exchange is latency, not bandwidth); the default
  // is one send_recv each. The transfers of one call must not depend on each other.
  virtual std::unique_ptr<Pending> send_recv_all(std::span<const Transfer> transfers, DType dtype, Stream s);
  // Every member has reached this point (host side; GPU work already queued is not waited for).
  virtual void barrier() = 0;
  // Waits on the host until the communication queued on s has finished (no-op for MPI).
  virtual void synchronize(Stream s) = 0;

 protected:
  Comm(std::string name, int rank, int size) : name_(std::move(name)), rank_(rank), size_(size) {}

 private:
  std::string name_;
  int rank_;
  int size_;
};

}  // namespace ditrun::comm

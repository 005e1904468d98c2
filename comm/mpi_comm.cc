#include "comm/mpi_comm.h"

#include <climits>
#include <cstring>
#include <vector>

#include "comm/error.h"

namespace ditrun::comm {

namespace {

MPI_Datatype reduce_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    default: break;
  }
  throw CommError("MPI all_reduce does not support " + std::string(dtype_name(t)) +
                  " (the CPU backend reduces f32/f64/i32/i64/u8)");
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

// MPI counts are int: data-movement operations go as bytes, so the limit is 2 GiB per block.
int byte_count(size_t count, DType t) {
  const size_t bytes = count * dtype_size(t);
  if (bytes > static_cast<size_t>(INT_MAX))
    throw CommError("MPI block of " + std::to_string(bytes) + " bytes exceeds the 2 GiB MPI count limit");
  return static_cast<int>(bytes);
}

int element_count(size_t count) {
  if (count > static_cast<size_t>(INT_MAX))
    throw CommError("MPI count " + std::to_string(count) + " exceeds the int limit");
  return static_cast<int>(count);
}

class MpiPending final : public Pending {
 public:
  explicit MpiPending(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  ~MpiPending() override {
    // An unwaited exchange is completed here so buffers are never left in flight.
    if (!requests_.empty()) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
  void wait(Stream) override {
    if (requests_.empty()) return;
    DITRUN_MPI_CHECK(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
    requests_.clear();
  }

 private:
  std::vector<MPI_Request> requests_;
};

}  // namespace

int mpi_rank(MPI_Comm comm) {
  int r = 0;
  DITRUN_MPI_CHECK(MPI_Comm_rank(comm, &r));
  return r;
}

int mpi_size(MPI_Comm comm) {
  int s = 0;
  DITRUN_MPI_CHECK(MPI_Comm_size(comm, &s));
  return s;
}

MpiComm::MpiComm(std::string name, MPI_Comm comm)
    : Comm(std::move(name), mpi_rank(comm), mpi_size(comm)), comm_(comm) {
  DITRUN_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiComm::all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Stream) {
  const void* in = send == recv ? MPI_IN_PLACE : send;
  DITRUN_MPI_CHECK(MPI_Allreduce(in, recv, element_count(count), reduce_type(dtype), mpi_op(op), comm_));
}

void MpiComm::all_gather(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream) {
  const int n = byte_count(count_per_rank, dtype);
  DITRUN_MPI_CHECK(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_));
}

void MpiComm::all_to_all(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream) {
  const int n = byte_count(count_per_rank, dtype);
  DITRUN_MPI_CHECK(MPI_Alltoall(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_));
}

void MpiComm::broadcast(void* buffer, size_t count, DType dtype, int root, Stream) {
  DITRUN_MPI_CHECK(MPI_Bcast(buffer, byte_count(count, dtype), MPI_BYTE, root, comm_));
}

std::unique_ptr<Pending> MpiComm::send_recv(const void* send, int dst, void* recv, int src, size_t count,
                                            DType dtype, Stream) {
  const int n = byte_count(count, dtype);
  std::vector<MPI_Request> requests;
  constexpr int kTag = 17;
  if (src >= 0) {
    requests.emplace_back();
    DITRUN_MPI_CHECK(MPI_Irecv(recv, n, MPI_BYTE, src, kTag, comm_, &requests.back()));
  }
  if (dst >= 0) {
    requests.emplace_back();
    DITRUN_MPI_CHECK(MPI_Isend(send, n, MPI_BYTE, dst, kTag, comm_, &requests.back()));
  }
  return std::make_unique<MpiPending>(std::move(requests));
}

void MpiComm::barrier() { DITRUN_MPI_CHECK(MPI_Barrier(comm_)); }

}  // namespace ditrun::comm

#include "comm/nccl_comm.h"

#include "comm/abort.h"
#include "comm/cuda_check.h"
#include "comm/mpi_comm.h"

namespace ditrun::comm {

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

cudaStream_t cuda_stream(Stream s) { return static_cast<cudaStream_t>(s.handle); }

class NcclPending final : public Pending {
 public:
  explicit NcclPending(cudaStream_t queued_on) {
    DITRUN_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    DITRUN_CUDA_CHECK(cudaEventRecord(done_, queued_on));
  }
  ~NcclPending() override { cudaEventDestroy(done_); }
  void wait(Stream on) override { DITRUN_CUDA_CHECK(cudaStreamWaitEvent(cuda_stream(on), done_, 0)); }

 private:
  cudaEvent_t done_ = nullptr;
};

}  // namespace

struct NcclComm::State {
  MPI_Comm mpi = MPI_COMM_NULL;
  ncclComm_t nccl = nullptr;
  int abort_hook = -1;
};

NcclComm::NcclComm(std::string name, MPI_Comm group)
    : Comm(std::move(name), mpi_rank(group), mpi_size(group)), state_(std::make_unique<State>()) {
  state_->mpi = group;
  ncclUniqueId id{};
  if (rank() == 0) DITRUN_NCCL_CHECK(ncclGetUniqueId(&id));
  DITRUN_MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, group));
  DITRUN_NCCL_CHECK(ncclCommInitRank(&state_->nccl, size(), id, rank()));
  ncclComm_t handle = state_->nccl;
  // A failing rank aborts the communicator so that peers blocked inside NCCL are released.
  state_->abort_hook = add_abort_hook([handle] { ncclCommAbort(handle); });
}

NcclComm::~NcclComm() {
  remove_abort_hook(state_->abort_hook);
  if (state_->nccl) ncclCommDestroy(state_->nccl);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && state_->mpi != MPI_COMM_NULL) MPI_Comm_free(&state_->mpi);
}

void NcclComm::all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, Stream s) {
  DITRUN_NCCL_CHECK(ncclAllReduce(send, recv, count, nccl_type(dtype), nccl_op(op), state_->nccl, cuda_stream(s)));
}

void NcclComm::all_gather(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) {
  DITRUN_NCCL_CHECK(ncclAllGather(send, recv, count_per_rank, nccl_type(dtype), state_->nccl, cuda_stream(s)));
}

void NcclComm::all_to_all(const void* send, void* recv, size_t count_per_rank, DType dtype, Stream s) {
  const size_t block = count_per_rank * dtype_size(dtype);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  DITRUN_NCCL_CHECK(ncclGroupStart());
  for (int peer = 0; peer < size(); ++peer) {
    DITRUN_NCCL_CHECK(ncclSend(in + peer * block, count_per_rank, nccl_type(dtype), peer, state_->nccl,
                               cuda_stream(s)));
    DITRUN_NCCL_CHECK(ncclRecv(out + peer * block, count_per_rank, nccl_type(dtype), peer, state_->nccl,
                               cuda_stream(s)));
  }
  DITRUN_NCCL_CHECK(ncclGroupEnd());
}

void NcclComm::broadcast(void* buffer, size_t count, DType dtype, int root, Stream s) {
  DITRUN_NCCL_CHECK(ncclBroadcast(buffer, buffer, count, nccl_type(dtype), root, state_->nccl, cuda_stream(s)));
}

std::unique_ptr<Pending> NcclComm::send_recv(const void* send, int dst, void* recv, int src, size_t count,
                                             DType dtype, Stream s) {
  DITRUN_NCCL_CHECK(ncclGroupStart());
  if (dst >= 0) DITRUN_NCCL_CHECK(ncclSend(send, count, nccl_type(dtype), dst, state_->nccl, cuda_stream(s)));
  if (src >= 0) DITRUN_NCCL_CHECK(ncclRecv(recv, count, nccl_type(dtype), src, state_->nccl, cuda_stream(s)));
  DITRUN_NCCL_CHECK(ncclGroupEnd());
  return std::make_unique<NcclPending>(cuda_stream(s));
}

std::unique_ptr<Pending> NcclComm::send_recv_all(std::span<const Transfer> transfers, DType dtype, Stream s) {
  DITRUN_NCCL_CHECK(ncclGroupStart());
  for (const Transfer& t : transfers) {
    if (t.dst >= 0) DITRUN_NCCL_CHECK(ncclSend(t.send, t.count, nccl_type(dtype), t.dst, state_->nccl, cuda_stream(s)));
    if (t.src >= 0) DITRUN_NCCL_CHECK(ncclRecv(t.recv, t.count, nccl_type(dtype), t.src, state_->nccl, cuda_stream(s)));
  }
  DITRUN_NCCL_CHECK(ncclGroupEnd());
  return std::make_unique<NcclPending>(cuda_stream(s));
}

void NcclComm::barrier() { DITRUN_MPI_CHECK(MPI_Barrier(state_->mpi)); }

void NcclComm::synchronize(Stream s) { DITRUN_CUDA_CHECK(cudaStreamSynchronize(cuda_stream(s))); }

}  // namespace ditrun::comm

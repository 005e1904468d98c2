#include "model/cuda/op_timing.h"

#include <algorithm>
#include <stdexcept>

#include "comm/cuda_check.h"

namespace ditrun::cuda {

OpTiming::~OpTiming() {
  for (cudaEvent_t e : all_events_) cudaEventDestroy(e);  // teardown: errors cannot be acted on
}

OpTiming::Scope::~Scope() {
  if (timing_) timing_->end(index_);
}

cudaEvent_t OpTiming::event() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  DITRUN_CUDA_CHECK(cudaEventCreate(&e));
  all_events_.push_back(e);
  return e;
}

OpTiming::Scope OpTiming::begin(const char* op, std::string shape, double flop) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DITRUN_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
  if (capture != cudaStreamCaptureStatusNone) return {};
  Pending p{op, std::move(shape), flop, event(), event()};
  DITRUN_CUDA_CHECK(cudaEventRecord(p.start, stream_));
  pending_.push_back(std::move(p));
  return Scope(this, pending_.size() - 1);
}

void OpTiming::end(size_t index) noexcept {
  if (cudaEventRecord(pending_[index].end, stream_) != cudaSuccess) failed_ = true;
}

std::vector<OpTiming::Entry> OpTiming::collect() {
  DITRUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (Pending& p : pending_) {
    float ms = 0;
    DITRUN_CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.end));
    Entry& e = totals_[{p.op, p.shape}];
    e.op = p.op;
    e.shape = p.shape;
    ++e.calls;
    e.ms += ms;
    e.flop += p.flop;
    free_events_.push_back(p.start);
    free_events_.push_back(p.end);
  }
  pending_.clear();
  if (failed_) {
    failed_ = false;
    totals_.clear();
    throw std::runtime_error("op timing: a CUDA event could not be recorded");
  }
  std::vector<Entry> out;
  for (auto& [key, e] : totals_) out.push_back(e);
  totals_.clear();
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.ms > b.ms; });
  return out;
}

}  // namespace ditrun::cuda

// Per-op GPU time of a CUDA backend: a pair of CUDA events around each op on the backend's stream, summed per op
// and shape. It shows where a forward's time goes at the clock the forward really runs at, where Nsight Compute
// times one kernel at a time on an idle, cooler GPU (bench/README.md: 416 ms of kernels in a 469 ms forward).
// Off by default; when on, every op records two events (no host synchronisation) and ops queued inside a CUDA
// graph capture are not timed.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

namespace ditrun::cuda {

class OpTiming {
 public:
  struct Entry {
    std::string op, shape;
    int64_t calls = 0;
    double ms = 0;    // GPU time summed over the calls
    double flop = 0;  // summed over the calls (0 for ops that are not counted in FLOPs)
  };

  explicit OpTiming(cudaStream_t stream) : stream_(stream) {}
  ~OpTiming();
  OpTiming(const OpTiming&) = delete;
  OpTiming& operator=(const OpTiming&) = delete;

  bool enabled() const { return enabled_; }
  void set_enabled(bool on) { enabled_ = on; }

  // Times the work queued on the stream while it lives (when enabled and the stream is not capturing).
  class Scope {
   public:
    Scope() = default;
    Scope(Scope&& other) noexcept : timing_(std::exchange(other.timing_, nullptr)), index_(other.index_) {}
    Scope& operator=(Scope&&) = delete;
    ~Scope();

   private:
    friend class OpTiming;
    Scope(OpTiming* timing, size_t index) : timing_(timing), index_(index) {}
    OpTiming* timing_ = nullptr;
    size_t index_ = 0;
  };
  // shape() is called only when timing is on (building the key costs a string per op).
  template <typename ShapeFn>
  Scope time(const char* op, ShapeFn&& shape, double flop) {
    if (!enabled_) return {};
    return begin(op, shape(), flop);
  }

  // Waits for the stream, adds the finished ops to the totals and returns them, the longest first; the totals
  // are then cleared. Throws if an event could not be recorded or read.
  std::vector<Entry> collect();

 private:
  struct Pending {
    std::string op, shape;
    double flop;
    cudaEvent_t start, end;
  };
  Scope begin(const char* op, std::string shape, double flop);
  void end(size_t index) noexcept;
  cudaEvent_t event();

  cudaStream_t stream_;
  bool enabled_ = false;
  bool failed_ = false;  // an event record failed in a destructor (reported by collect)
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_events_, all_events_;
  std::map<std::pair<std::string, std::string>, Entry> totals_;
};

}  // namespace ditrun::cuda

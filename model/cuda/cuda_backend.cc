#include "model/cuda/cuda_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/cuda_check.h"
#include "model/cuda/op_timing.h"
#include "model/cuda/attention.h"
#include "model/cuda/attention_sm90.h"
#include "model/cuda/elementwise.h"
#include "model/cuda/gemm.h"
#include "model/cuda/video_ops.h"

namespace ditrun {

namespace {

constexpr size_t kArenaChunk = size_t{256} << 20;
// bf16 transfers go through an f32 device buffer in pieces of at most this many elements (64 MiB).
constexpr size_t kStagingCapFloats = size_t{16} << 20;

[[noreturn]] void invalid(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("cuda ") + op + ": " + what);
}

void require_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t && t->device() != Device::cuda) invalid(op, "tensor " + shape_string(t->shape()) + " is not on the GPU");
}

void require_dtype(const Tensor& t, std::initializer_list<DType> allowed, const char* op, const char* what) {
  if (std::find(allowed.begin(), allowed.end(), t.dtype()) == allowed.end())
    invalid(op, std::string(what) + " has unsupported dtype " + std::string(dtype_name(t.dtype())));
}

void require_same_numel(const Tensor& a, const Tensor& b, const char* op) {
  if (a.numel() != b.numel()) invalid(op, shape_string(a.shape()) + " vs " + shape_string(b.shape()));
}

// A per-feature f32 vector (norm weight, gate, shift, scale) of length d.
void require_vector(const Tensor& t, int64_t d, const char* op, const char* what) {
  require_dtype(t, {DType::f32}, op, what);
  if (t.numel() != d)
    invalid(op, std::string(what) + " " + shape_string(t.shape()) + " for rows of " + std::to_string(d));
}

// In-place is fine for the row kernels; an alias with another dtype is not.
void require_alias_same_dtype(const Tensor& out, const Tensor& x, const char* op) {
  if (out.data() == x.data() && out.dtype() != x.dtype()) invalid(op, "out aliases x with another dtype");
}

// Op timing keys: "rows×d" of a row op, with the dtypes that set its traffic.
std::string rows_key(const Tensor& x, const Tensor* out = nullptr) {
  std::string key =
      std::to_string(x.rows()) + "x" + std::to_string(x.dim(-1)) + " " + std::string(dtype_name(x.dtype()));
  if (out) key += "->" + std::string(dtype_name(out->dtype()));
  return key;
}

}  // namespace

CudaBackend::CudaBackend() {
  DITRUN_CUDA_CHECK(cudaGetDevice(&device_));
  DITRUN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  // Communication gets the highest priority: its kernels (NCCL) take SMs as soon as any frees up, instead of
  // queueing behind every block of a long attention or GEMM and then spinning on SMs that compute needs.
  int least_priority = 0, greatest_priority = 0;
  DITRUN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least_priority, &greatest_priority));
  DITRUN_CUDA_CHECK(cudaStreamCreateWithPriority(&comm_stream_, cudaStreamNonBlocking, greatest_priority));
  DITRUN_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
  if (const char* env = std::getenv("DITRUN_CUDA_GRAPHS")) graphs_enabled_ = std::string(env) != "0";
  try {
    arena_ = std::make_unique<Arena>(
        [](size_t n) {
          void* p = nullptr;
          DITRUN_CUDA_CHECK(cudaMalloc(&p, n));
          return p;
        },
        [](void* p) { cudaFree(p); }, kArenaChunk);
    gemm_ = std::make_unique<cuda::Gemm>(stream_, cuda::gemm_tuning_file());
    op_timing_ = std::make_unique<cuda::OpTiming>(stream_);
  } catch (...) {
    gemm_.reset();
    arena_.reset();
    cudaEventDestroy(compute_done_);
    cudaStreamDestroy(comm_stream_);
    cudaStreamDestroy(stream_);
    throw;
  }
}

CudaBackend::~CudaBackend() {
  // Teardown: errors cannot be acted on here. Free everything before the stream that used it goes away.
  cudaStreamSynchronize(comm_stream_);
  cudaStreamSynchronize(stream_);
  for (auto& [key, exec] : graphs_)
    if (exec) cudaGraphExecDestroy(exec);
  gemm_.reset();
  op_timing_.reset();
  if (staging_) cudaFree(staging_);
  arena_.reset();
  for (cudaEvent_t e : comm_marks_) cudaEventDestroy(e);
  for (cudaEvent_t e : time_marks_) cudaEventDestroy(e);
  cudaEventDestroy(compute_done_);
  cudaStreamDestroy(comm_stream_);
  cudaStreamDestroy(stream_);
}

void CudaBackend::run_recorded(const std::string& key, const std::function<void()>& work) {
  if (!graphs_enabled_) {
    work();
    return;
  }
  // Called from work that is being recorded (a whole denoising step recording its forwards): that recording
  // takes this work too; a second capture cannot start on the stream.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DITRUN_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    work();
    return;
  }
  // The scratch position is part of the key: a recording replays the scratch addresses it was made with.
  const Arena::Mark mark = arena().mark();
  const std::string where = key + "@" + std::to_string(mark.chunk) + ":" + std::to_string(mark.offset);
  auto it = graphs_.find(where);
  if (it == graphs_.end()) {  // first call: run directly (caches, cuBLASLt plans and the arena settle)
    graphs_.emplace(where, nullptr);
    work();
    return;
  }
  if (!it->second) {
    const auto start = std::chrono::steady_clock::now();
    // Thread-local capture: this thread's work goes into the graph; a forbidden call in it (a synchronous copy,
    // an allocation) fails the capture instead of running.
    DITRUN_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      work();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      graphs_.erase(it);
      throw;
    }
    DITRUN_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    size_t nodes = 0;
    cudaGraphExec_t exec = nullptr;
    cudaError_t made = cudaGraphGetNodes(graph, nullptr, &nodes);
    if (made == cudaSuccess) made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    DITRUN_CUDA_CHECK(made);
    it->second = exec;
    recording_stats_.recorded += 1;
    recording_stats_.nodes += static_cast<int64_t>(nodes);
    recording_stats_.record_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  } else {
    recording_stats_.replayed += 1;
  }
  DITRUN_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
}

void CudaBackend::forget_recorded(const std::string& key_prefix) {
  // A graph still running when it is destroyed is freed when it completes (cudaGraphExecDestroy).
  for (auto it = graphs_.lower_bound(key_prefix); it != graphs_.end() && it->first.starts_with(key_prefix);) {
    if (it->second) DITRUN_CUDA_CHECK(cudaGraphExecDestroy(it->second));
    it = graphs_.erase(it);
  }
}

Backend::RecordingStats CudaBackend::recording_stats() const {
  RecordingStats stats = recording_stats_;
  stats.kept = 0;
  for (const auto& [key, exec] : graphs_) stats.kept += exec != nullptr;
  return stats;
}

int CudaBackend::comm_mark() {
  if (marks_used_ == comm_marks_.size()) {
    cudaEvent_t e = nullptr;
    DITRUN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    comm_marks_.push_back(e);
  }
  DITRUN_CUDA_CHECK(cudaEventRecord(comm_marks_[marks_used_], comm_stream_));
  return static_cast<int>(marks_used_++);
}

int CudaBackend::time_mark(bool on_comm_stream) {
  if (time_marks_used_ == time_marks_.size()) {
    cudaEvent_t e = nullptr;
    DITRUN_CUDA_CHECK(cudaEventCreate(&e));
    time_marks_.push_back(e);
  }
  DITRUN_CUDA_CHECK(cudaEventRecord(time_marks_[time_marks_used_], on_comm_stream ? comm_stream_ : stream_));
  return static_cast<int>(time_marks_used_++);
}

double CudaBackend::time_between(int a, int b) {
  if (a < 0 || b < 0 || static_cast<size_t>(std::max(a, b)) >= time_marks_used_)
    throw std::out_of_range("cuda time_between: mark " + std::to_string(std::max(a, b)) + " of " +
                            std::to_string(time_marks_used_));
  DITRUN_CUDA_CHECK(cudaEventSynchronize(time_marks_[a]));
  DITRUN_CUDA_CHECK(cudaEventSynchronize(time_marks_[b]));
  float ms = 0;
  DITRUN_CUDA_CHECK(cudaEventElapsedTime(&ms, time_marks_[a], time_marks_[b]));
  return ms;
}

void CudaBackend::compute_waits_for_comm(int mark) {
  DITRUN_CUDA_CHECK(cudaStreamWaitEvent(stream_, comm_marks_.at(static_cast<size_t>(mark)), 0));
}

void CudaBackend::comm_waits_for_compute() {
  DITRUN_CUDA_CHECK(cudaEventRecord(compute_done_, stream_));
  DITRUN_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_done_, 0));
}

void CudaBackend::attention_merge(Tensor& out_acc, Tensor& lse_acc, const Tensor& out_part, const Tensor& lse_part) {
  if (out_acc.dtype() != DType::f32 || lse_acc.dtype() != DType::f32 || lse_part.dtype() != DType::f32 ||
      out_acc.numel() != out_part.numel() || out_acc.rank() != 3 || lse_acc.numel() != lse_part.numel() ||
      lse_acc.numel() != out_acc.dim(0) * out_acc.dim(1))
    throw std::invalid_argument("cuda attention_merge: acc " + shape_string(out_acc.shape()) + " part " +
                                shape_string(out_part.shape()) + " lse " + shape_string(lse_acc.shape()));
  cuda::attention_merge(out_acc.ptr<float>(), lse_acc.ptr<float>(), out_part.data(), out_part.dtype(),
                        lse_part.ptr<float>(), out_acc.dim(0), out_acc.dim(1), out_acc.dim(2), stream_);
}

void CudaBackend::fill_normal(Tensor& t, uint64_t seed, uint64_t stream, float mean, float std_dev) {
  require_device("fill_normal", {&t});
  cuda::fill_normal(t.data(), t.dtype(), t.numel(), seed, stream, mean, std_dev, stream_);
}

Tensor CudaBackend::allocate(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* p = nullptr;
  DITRUN_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>((bytes + 255) / 256 * 256, 256)));
  std::shared_ptr<void> memory(p, [](void* q) { cudaFree(q); });
  return Tensor(p, dtype, Device::cuda, shape, std::move(memory));
}

float* CudaBackend::staging(size_t floats) {
  floats = std::min(floats, kStagingCapFloats);
  if (floats > staging_floats_) {
    if (staging_) DITRUN_CUDA_CHECK(cudaFree(staging_));
    staging_ = nullptr;
    staging_floats_ = 0;
    DITRUN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging_), floats * sizeof(float)));
    staging_floats_ = floats;
  }
  return staging_;
}

void CudaBackend::upload(Tensor& t, const float* host) {
  require_device("upload", {&t});
  require_dtype(t, {DType::f32, DType::bf16}, "upload", "destination");
  const size_t n = static_cast<size_t>(t.numel());
  if (n == 0) return;
  if (t.dtype() == DType::f32) {
    DITRUN_CUDA_CHECK(cudaMemcpyAsync(t.data(), host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
  } else {
    float* buffer = staging(n);
    // The stream orders each piece's conversion before the next piece overwrites the buffer.
    for (size_t begin = 0; begin < n; begin += staging_floats_) {
      const size_t count = std::min(staging_floats_, n - begin);
      DITRUN_CUDA_CHECK(
          cudaMemcpyAsync(buffer, host + begin, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
      cuda::convert(t.ptr<uint16_t>() + begin, DType::bf16, buffer, DType::f32, static_cast<int64_t>(count),
                    stream_);
    }
  }
  // The caller may reuse `host` as soon as this returns.
  DITRUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::download(const Tensor& t, float* host) {
  require_device("download", {&t});
  require_dtype(t, {DType::f32, DType::bf16}, "download", "source");
  const size_t n = static_cast<size_t>(t.numel());
  if (n == 0) return;
  if (t.dtype() == DType::f32) {
    DITRUN_CUDA_CHECK(cudaMemcpyAsync(host, t.data(), n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  } else {
    float* buffer = staging(n);
    for (size_t begin = 0; begin < n; begin += staging_floats_) {
      const size_t count = std::min(staging_floats_, n - begin);
      cuda::convert(buffer, DType::f32, t.ptr<uint16_t>() + begin, DType::bf16, static_cast<int64_t>(count),
                    stream_);
      DITRUN_CUDA_CHECK(
          cudaMemcpyAsync(host + begin, buffer, count * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    }
  }
  DITRUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy(Tensor& dst, const Tensor& src) {
  require_device("copy", {&dst, &src});
  const auto timed = op_timing_->time("copy", [&] { return rows_key(src, &dst); }, 0);
  require_same_numel(dst, src, "copy");
  require_dtype(dst, {DType::f32, DType::bf16}, "copy", "destination");
  require_dtype(src, {DType::f32, DType::bf16}, "copy", "source");
  // The reference uses memmove; on the GPU only an exact alias (a no-op) is allowed among overlaps.
  const auto* d = static_cast<const char*>(dst.data());
  const auto* s = static_cast<const char*>(src.data());
  if (d != s && d < s + src.bytes() && s < d + dst.bytes()) invalid("copy", "source and destination overlap");
  if (d == s && dst.dtype() != src.dtype()) invalid("copy", "in-place dtype conversion");
  cuda::convert(dst.data(), dst.dtype(), src.data(), src.dtype(), src.numel(), stream_);
}

void CudaBackend::synchronize() { DITRUN_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

const cuda::GemmTuningStats& CudaBackend::gemm_tuning_stats() const { return gemm_->tuning_stats(); }

void CudaBackend::linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue) {
  require_device("linear", {&out, &x, &w, bias});
  const int64_t m = x.numel() / std::max<int64_t>(x.dim(-1), 1), n = w.dim(0), k = x.dim(-1);
  const auto timed = op_timing_->time(
      "linear",
      [&] {
        return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " " +
               std::string(dtype_name(x.dtype())) + "->" + std::string(dtype_name(out.dtype())) +
               (epilogue == Epilogue::gelu_tanh ? " gelu" : "") + (bias ? " bias" : "");
      },
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  gemm_->linear(out, x, w, bias, epilogue);
}

void CudaBackend::layer_norm(Tensor& out, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps) {
  require_device("layer_norm", {&out, &x, weight, bias});
  const auto timed = op_timing_->time("layer_norm", [&] { return rows_key(x, &out); }, 0);
  require_same_numel(out, x, "layer_norm");
  require_alias_same_dtype(out, x, "layer_norm");
  const int64_t d = x.dim(-1);
  if (weight) require_vector(*weight, d, "layer_norm", "weight");
  if (bias) require_vector(*bias, d, "layer_norm", "bias");
  cuda::layer_norm(out.data(), out.dtype(), x.data(), x.dtype(), x.rows(), d, weight ? weight->ptr<float>() : nullptr,
                   bias ? bias->ptr<float>() : nullptr, nullptr, nullptr, eps, stream_);
}

void CudaBackend::layer_norm_modulate(Tensor& out, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                      float eps) {
  require_device("layer_norm_modulate", {&out, &x, &shift, &scale});
  const auto timed = op_timing_->time("layer_norm_modulate", [&] { return rows_key(x, &out); }, 0);
  require_same_numel(out, x, "layer_norm_modulate");
  require_alias_same_dtype(out, x, "layer_norm_modulate");
  const int64_t d = x.dim(-1);
  require_vector(shift, d, "layer_norm_modulate", "shift");
  require_vector(scale, d, "layer_norm_modulate", "scale");
  cuda::layer_norm(out.data(), out.dtype(), x.data(), x.dtype(), x.rows(), d, nullptr, nullptr, shift.ptr<float>(),
                   scale.ptr<float>(), eps, stream_);
}

void CudaBackend::rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps) {
  require_device("rms_norm", {&out, &x, &weight});
  const auto timed = op_timing_->time("rms_norm", [&] { return rows_key(x, &out); }, 0);
  require_same_numel(out, x, "rms_norm");
  require_alias_same_dtype(out, x, "rms_norm");
  const int64_t d = x.dim(-1);
  require_vector(weight, d, "rms_norm", "weight");
  cuda::rms_norm(out.data(), out.dtype(), x.data(), x.dtype(), x.rows(), d, weight.ptr<float>(), eps, stream_);
}

void CudaBackend::rope(Tensor& x, const Tensor& cos, const Tensor& sin) {
  require_device("rope", {&x, &cos, &sin});
  if (x.rank() != 3) invalid("rope", "x " + shape_string(x.shape()) + " is not [L, H, d]");
  const int64_t l = x.dim(0), h = x.dim(1), d = x.dim(2);
  require_dtype(cos, {DType::f32}, "rope", "cos");
  require_dtype(sin, {DType::f32}, "rope", "sin");
  if (cos.rank() != 2 || cos.dim(1) != d / 2 || sin.shape() != cos.shape())
    invalid("rope", "cos " + shape_string(cos.shape()) + " / sin " + shape_string(sin.shape()) + " for x " +
                        shape_string(x.shape()));
  // Tokens beyond the table (padding) stay unrotated, as in the reference (spec §1.6).
  cuda::rope(x.data(), x.dtype(), std::min(l, cos.dim(0)), h, d, cos.ptr<float>(), sin.ptr<float>(), stream_);
}

void CudaBackend::rms_norm_rope(Tensor& x, const Tensor& weight, float eps, const Tensor& cos, const Tensor& sin) {
  require_device("rms_norm_rope", {&x, &weight, &cos, &sin});
  const auto timed = op_timing_->time("rms_norm_rope", [&] { return rows_key(x); }, 0);
  if (x.rank() != 3) invalid("rms_norm_rope", "x " + shape_string(x.shape()) + " is not [L, H, d]");
  const int64_t l = x.dim(0), h = x.dim(1), d = x.dim(2);
  require_vector(weight, h * d, "rms_norm_rope", "weight");
  require_dtype(cos, {DType::f32}, "rms_norm_rope", "cos");
  require_dtype(sin, {DType::f32}, "rms_norm_rope", "sin");
  if (cos.rank() != 2 || cos.dim(1) != d / 2 || sin.shape() != cos.shape())
    invalid("rms_norm_rope", "cos " + shape_string(cos.shape()) + " / sin " + shape_string(sin.shape()) +
                                 " for x " + shape_string(x.shape()));
  cuda::rms_norm_rope(x.data(), x.dtype(), l, h, d, weight.ptr<float>(), eps, cos.ptr<float>(), sin.ptr<float>(),
                      std::min(l, cos.dim(0)), stream_);
}

void CudaBackend::add_gated(Tensor& x, const Tensor& y, const Tensor& gate) {
  require_device("add_gated", {&x, &y, &gate});
  const auto timed = op_timing_->time("add_gated", [&] { return rows_key(x); }, 0);
  require_dtype(x, {DType::f32}, "add_gated", "x");
  require_same_numel(x, y, "add_gated");
  const int64_t d = x.dim(-1);
  require_vector(gate, d, "add_gated", "gate");
  cuda::add_gated(x.ptr<float>(), y.data(), y.dtype(), gate.ptr<float>(), x.rows(), d, stream_);
}

void CudaBackend::add(Tensor& x, const Tensor& y) {
  require_device("add", {&x, &y});
  const auto timed = op_timing_->time("add", [&] { return rows_key(x); }, 0);
  require_dtype(x, {DType::f32}, "add", "x");
  require_same_numel(x, y, "add");
  cuda::add_gated(x.ptr<float>(), y.data(), y.dtype(), nullptr, 1, x.numel(), stream_);
}

void CudaBackend::add_layer_norm(Tensor& x, const Tensor& y, const Tensor* gate, Tensor& out, const Tensor* weight,
                                 const Tensor* bias, const Tensor* shift, const Tensor* scale, float eps) {
  require_device("add_layer_norm", {&x, &y, gate, &out, weight, bias, shift, scale});
  const auto timed = op_timing_->time("add_layer_norm", [&] { return rows_key(y, &out); }, 0);
  require_dtype(x, {DType::f32}, "add_layer_norm", "x");
  require_same_numel(x, y, "add_layer_norm");
  require_same_numel(out, x, "add_layer_norm");
  if (out.data() == x.data() || out.data() == y.data()) invalid("add_layer_norm", "out aliases x or y");
  require_norm_choice(weight, bias, shift, scale);
  const int64_t d = x.dim(-1);
  const std::pair<const Tensor*, const char*> vectors[] = {
      {gate, "gate"}, {weight, "weight"}, {bias, "bias"}, {shift, "shift"}, {scale, "scale"}};
  for (const auto& [v, name] : vectors)
    if (v) require_vector(*v, d, "add_layer_norm", name);
  auto ptr = [](const Tensor* t) { return t ? t->ptr<float>() : nullptr; };
  cuda::add_layer_norm(x.ptr<float>(), y.data(), y.dtype(), ptr(gate), out.data(), out.dtype(), x.rows(), d,
                       ptr(weight), ptr(bias), ptr(shift), ptr(scale), eps, stream_);
}

void CudaBackend::silu(Tensor& out, const Tensor& x) {
  require_device("silu", {&out, &x});
  const auto timed = op_timing_->time("silu", [&] { return rows_key(x, &out); }, 0);
  require_same_numel(out, x, "silu");
  require_alias_same_dtype(out, x, "silu");
  cuda::silu(out.data(), out.dtype(), x.data(), x.dtype(), x.numel(), stream_);
}

void CudaBackend::lincomb(Tensor& out, std::span<const float> coeffs, std::span<const Tensor* const> inputs) {
  require_device("lincomb", {&out});
  const auto timed = op_timing_->time("lincomb", [&] { return rows_key(out); }, 0);
  require_dtype(out, {DType::f32}, "lincomb", "out");
  if (coeffs.size() != inputs.size()) invalid("lincomb", "coefficient count");
  if (inputs.size() > static_cast<size_t>(cuda::kMaxLincombInputs))
    invalid("lincomb", std::to_string(inputs.size()) + " inputs (at most " +
                           std::to_string(cuda::kMaxLincombInputs) + ")");
  std::vector<const float*> pointers;
  for (const Tensor* t : inputs) {
    require_device("lincomb", {t});
    require_dtype(*t, {DType::f32}, "lincomb", "input");
    require_same_numel(out, *t, "lincomb");
    pointers.push_back(t->ptr<float>());
  }
  cuda::lincomb(out.ptr<float>(), pointers.data(), coeffs.data(), static_cast<int>(inputs.size()), out.numel(),
                stream_);
}

void CudaBackend::attention(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v,
                            int64_t kv_valid, float scale) {
  require_device("attention", {&out, lse, &q, &k, &v});
  // bf16 on tensor cores (the DiT), or all f32 (the VAE's single wide head, a simple kernel).
  const DType dtype = q.dtype() == DType::f32 ? DType::f32 : DType::bf16;
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &q, &k, &v})
    require_dtype(*t, {dtype}, "attention", "q/k/v/out");
  if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3)
    invalid("attention", "q/k/v must be [L, H, d]");
  const int64_t lq = q.dim(0), h = q.dim(1), d = q.dim(2), lk = k.dim(0);
  if (k.dim(1) != h || v.dim(1) != h || k.dim(2) != d || v.dim(2) != d || v.dim(0) != lk || out.numel() != q.numel())
    invalid("attention", "q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) + " v " +
                             shape_string(v.shape()));
  if (lse) {
    require_dtype(*lse, {DType::f32}, "attention", "lse");
    if (lse->numel() != h * lq) invalid("attention", "lse " + shape_string(lse->shape()));
  }
  const int64_t valid_keys = std::clamp<int64_t>(kv_valid, 0, lk);
  const auto timed = op_timing_->time(
      "attention",
      [&] {
        return std::to_string(h) + "x" + std::to_string(lq) + "x" + std::to_string(valid_keys) + " d" +
               std::to_string(d) + " " + std::string(dtype_name(dtype));
      },
      4.0 * static_cast<double>(h) * static_cast<double>(lq) * static_cast<double>(valid_keys) *
          static_cast<double>(d));
  if (dtype == DType::f32) {
    if (h == 1 && valid_keys > 0) {  // the VAE's one wide head (spec §4.2): fp32 GEMMs around a row softmax
      attention_f32_by_gemm(out, lse, q, k, v, valid_keys, scale);
      return;
    }
    cuda::attention_f32(out.ptr<float>(), lse ? lse->ptr<float>() : nullptr, q.ptr<float>(), k.ptr<float>(),
                        v.ptr<float>(), lq, lk, valid_keys, static_cast<int>(h), static_cast<int>(d), scale,
                        stream_);
    return;
  }
  // Head dim 128 (every Wan2.1 DiT) on the Hopper kernel (wgmma/TMA, attention_sm90.h), which needs 16-byte
  // aligned operands and a positive scale; the mma.sync kernel takes the rest (the tiny model's heads).
  const auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data()) % 16 == 0; };
  if (d == 128 && scale > 0.f && aligned(q) && aligned(k) && aligned(v)) {
    cuda::attention_bf16_sm90(out.data(), lse ? lse->ptr<float>() : nullptr, q.data(), k.data(), v.data(), lq, lk,
                              valid_keys, static_cast<int>(h), static_cast<int>(d), scale, stream_);
    return;
  }
  cuda::attention_bf16(out.data(), lse ? lse->ptr<float>() : nullptr, q.data(), k.data(), v.data(), lq, lk,
                       valid_keys, static_cast<int>(h), static_cast<int>(d), scale, stream_);
}

// One head as S = q·kᵀ (cuBLASLt, TF32 tensor cores with fp32 accumulation: the convolutions around it round
// to bf16, coarser), softmax(scale·S) with the log-sum-exp, out = P·v, in query chunks that
// keep S within 256 MiB (6,240 latent pixels at 480p: one chunk; 14,400 at 720p: four).
void CudaBackend::attention_f32_by_gemm(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                        int64_t keys, float scale) {
  const int64_t lq = q.dim(0), d = q.dim(2);
  const Arena::Scope scope(arena());
  const Tensor k2 = k.view({k.dim(0), d}).slice(0, keys), v2 = v.view({v.dim(0), d}).slice(0, keys);
  Tensor vt = scratch({d, keys}, DType::f32);
  cuda::transpose(vt.ptr<float>(), v2.ptr<float>(), keys, d, stream_);
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 26) / keys, 1, lq);
  Tensor scores = scratch({chunk, keys}, DType::f32);
  const Tensor q2 = q.view({lq, d});
  Tensor out2 = out.view({lq, d});
  for (int64_t r0 = 0; r0 < lq; r0 += chunk) {
    const int64_t rows = std::min(chunk, lq - r0);
    Tensor s = scores.slice(0, rows);
    gemm_->linear(s, q2.slice(r0, r0 + rows), k2, nullptr, Epilogue::none, /*tf32=*/true);
    cuda::softmax_rows(s.ptr<float>(), lse ? lse->ptr<float>() + r0 : nullptr, rows, keys, scale, stream_);
    Tensor o = out2.slice(r0, r0 + rows);
    gemm_->linear(o, s, vt, nullptr, Epilogue::none, /*tf32=*/true);
  }
}

void CudaBackend::patchify(Tensor& tokens, const Tensor& latent) {
  require_device("patchify", {&tokens, &latent});
  const auto timed = op_timing_->time("patchify", [&] { return rows_key(tokens); }, 0);
  require_dtype(latent, {DType::f32}, "patchify", "latent");
  if (latent.rank() != 4) invalid("patchify", "latent " + shape_string(latent.shape()) + " is not [C, F, H, W]");
  const int64_t c = latent.dim(0), f = latent.dim(1), hh = latent.dim(2), ww = latent.dim(3);
  expect_shape(tokens, {f * (hh / 2) * (ww / 2), c * 4}, "patchify tokens");
  cuda::patchify(tokens.data(), tokens.dtype(), latent.ptr<float>(), c, f, hh, ww, stream_);
}

void CudaBackend::unpatchify(Tensor& latent, const Tensor& tokens) {
  require_device("unpatchify", {&latent, &tokens});
  const auto timed = op_timing_->time("unpatchify", [&] { return rows_key(tokens); }, 0);
  require_dtype(latent, {DType::f32}, "unpatchify", "latent");
  if (latent.rank() != 4) invalid("unpatchify", "latent " + shape_string(latent.shape()) + " is not [C, F, H, W]");
  const int64_t c = latent.dim(0), f = latent.dim(1), hh = latent.dim(2), ww = latent.dim(3);
  if (tokens.dim(-1) != 4 * c || tokens.rows() < f * (hh / 2) * (ww / 2))
    invalid("unpatchify", "tokens " + shape_string(tokens.shape()));
  cuda::unpatchify(latent.ptr<float>(), tokens.data(), tokens.dtype(), c, f, hh, ww, stream_);
}

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

bool cuda_backend_built() { return true; }

}  // namespace ditrun

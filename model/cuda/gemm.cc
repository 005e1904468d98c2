#include "model/cuda/gemm.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/cublas_check.h"
#include "model/cuda/elementwise.h"

namespace ditrun::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
// Measuring: the heuristic's own choice is kept unless another candidate is this much faster (the spread of
// repeated timings of one kernel is ~1%); each candidate runs kWarmupRuns untimed, then a batch of about
// kBatchMs (kMinReps to kMaxReps runs) in each of kRounds rounds over all candidates; its best batch counts.
// Rounds interleave the candidates so clock or thermal drift does not favour the first ones.
constexpr double kNoise = 0.03;
constexpr int kWarmupRuns = 2, kRounds = 2, kMinReps = 2, kMaxReps = 50;
constexpr double kBatchMs = 1.0;

static_assert(sizeof(cublasLtMatmulAlgo_t) == sizeof(GemmAlgoWords), "cublasLtMatmulAlgo_t is 8 words");

cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// Largest power of two (≤ 256) dividing the address: the alignment cuBLASLt may assume for this operand.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

std::string describe(const Tensor& out, const Tensor& x, const Tensor& w) {
  return "x " + shape_string(x.shape()) + " " + std::string(dtype_name(x.dtype())) + ", w " +
         shape_string(w.shape()) + " " + std::string(dtype_name(w.dtype())) + ", out " +
         shape_string(out.shape()) + " " + std::string(dtype_name(out.dtype()));
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  DITRUN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
}

template <typename T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const T& value) {
  DITRUN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

void destroy(cublasLtMatmulDesc_t& desc, cublasLtMatrixLayout_t& w, cublasLtMatrixLayout_t& x,
             cublasLtMatrixLayout_t& out) {
  // Teardown paths: errors here cannot be acted on.
  if (out) cublasLtMatrixLayoutDestroy(out);
  if (x) cublasLtMatrixLayoutDestroy(x);
  if (w) cublasLtMatrixLayoutDestroy(w);
  if (desc) cublasLtMatmulDescDestroy(desc);
  desc = nullptr;
  w = x = out = nullptr;
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

// The two events of a timed batch.
struct TimingEvents {
  cudaEvent_t start = nullptr, stop = nullptr;
  TimingEvents() {
    DITRUN_CUDA_CHECK(cudaEventCreate(&start));
    try {
      DITRUN_CUDA_CHECK(cudaEventCreate(&stop));
    } catch (...) {
      cudaEventDestroy(start);
      throw;
    }
  }
  ~TimingEvents() {
    cudaEventDestroy(stop);
    cudaEventDestroy(start);
  }
  TimingEvents(const TimingEvents&) = delete;
  TimingEvents& operator=(const TimingEvents&) = delete;
};

}  // namespace

Gemm::Gemm(cudaStream_t stream, const std::filesystem::path& tuning_file) : stream_(stream) {
  DITRUN_CUBLAS_CHECK(cublasLtCreate(&handle_));
  try {
    DITRUN_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
    if (!tuning_file.empty()) {
      int device = 0;
      DITRUN_CUDA_CHECK(cudaGetDevice(&device));
      cudaDeviceProp prop{};
      DITRUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
      device_ = GemmDevice{prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                           static_cast<uint64_t>(cublasLtGetVersion())};
      tuning_file_ = std::make_unique<GemmTuningFile>(tuning_file);
    }
  } catch (...) {
    if (workspace_) cudaFree(workspace_);
    cublasLtDestroy(handle_);
    throw;
  }
}

Gemm::~Gemm() {
  for (auto& [key, p] : plans_) destroy(p.desc, p.w, p.x, p.out);
  // cudaFree waits for work that still uses the buffers.
  if (bias_buffer_) cudaFree(bias_buffer_);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

// Row-major out[M,N] = x[M,K]·w[N,K]ᵀ is, read column-major, outᵀ[N,M] = w·xᵀ: A = w stored K×N (ld K) used
// transposed, B = x stored K×M (ld K) as is, D stored N×M (ld N). The bias then runs along D's rows (length N),
// which is what CUBLASLT_EPILOGUE_BIAS broadcasts.
Gemm::Plan* Gemm::plan(const Key& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return &it->second;
  Plan p;
  try {
    // fp32 accumulation and scale for both input types; with f32 inputs CUBLAS_COMPUTE_32F is plain fp32 (TF32
    // only with CUBLAS_COMPUTE_32F_FAST_TF32): these are the small time/head GEMMs the reference keeps in fp32.
    DITRUN_CUBLAS_CHECK(cublasLtMatmulDescCreate(
        &p.desc, key.tf32 && key.in == DType::f32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    // cuBLASLt's GELU epilogue is the tanh approximation: PyTorch's addmm_activation, when it cannot use
    // CUBLASLT_EPILOGUE_GELU_BIAS, falls back to at::gelu(x, "tanh") for the same result; and cuda_ops_test
    // checks it against the CPU tanh form with f32 output at 5e-5, four times below the erf/tanh gap (~2e-4).
    const bool gelu = key.epilogue == Epilogue::gelu_tanh;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if (key.bias != kNoBias)
      epilogue = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    else if (gelu)
      epilogue = CUBLASLT_EPILOGUE_GELU;
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    if (key.bias != kNoBias) {
      const int32_t bias_type = cuda_type(static_cast<DType>(key.bias));
      set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type);
    }
    const cudaDataType_t in = cuda_type(key.in), out = cuda_type(key.out);
    DITRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w, in, key.k, key.n, key.k));
    DITRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.x, in, key.k, key.m, key.k));
    DITRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.out, out, key.n, key.m, key.n));
    if (tuning_file_ && load_tuned(key, p)) return &plans_.emplace(key, p).first->second;

    cublasLtMatmulPreference_t pref = nullptr;
    DITRUN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    // Tuning asks for several candidates; results come best-estimated first, so [0] is the untuned choice.
    std::vector<cublasLtMatmulHeuristicResult_t> results(tuning_file_ ? kTuningCandidates : 1);
    int found = 0;
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    try {
      set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(kWorkspaceBytes));
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_out);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_out);
      // A refusal (NOT_SUPPORTED, INVALID_VALUE, no result) is kept in the plan and reported by the caller.
      status = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.w, p.x, p.out, p.out, pref,
                                              static_cast<int>(results.size()), results.data(), &found);
    } catch (...) {
      cublasLtMatmulPreferenceDestroy(pref);
      throw;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p.status = status != CUBLAS_STATUS_SUCCESS ? status : found > 0 ? results[0].state : CUBLAS_STATUS_NOT_SUPPORTED;
    p.supported = p.status == CUBLAS_STATUS_SUCCESS;
    if (p.supported) {
      p.algo = results[0].algo;
      for (int i = 0; i < found; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= kWorkspaceBytes)
          p.candidates.push_back(results[i].algo);
      if (p.candidates.size() < 2) p.candidates.clear();  // nothing to choose between
    } else {
      destroy(p.desc, p.w, p.x, p.out);
    }
  } catch (...) {
    destroy(p.desc, p.w, p.x, p.out);
    throw;
  }
  return &plans_.emplace(key, p).first->second;
}

bool Gemm::load_tuned(const Key& key, Plan& p) {
  const GemmTuningEntry* entry = tuning_file_->find(device_, key);
  if (!entry) return false;
  cublasLtMatmulAlgo_t algo{};
  std::memcpy(algo.data, entry->algo.data(), sizeof algo.data);
  // A stored choice is used only when this cuBLASLt accepts it for this problem and it fits the workspace; the
  // key already pins GPU and library, so a refusal means a damaged or hand-edited entry: measure again.
  cublasLtMatmulHeuristicResult_t check{};
  const cublasStatus_t status = cublasLtMatmulAlgoCheck(handle_, p.desc, p.w, p.x, p.out, p.out, &algo, &check);
  if (status != CUBLAS_STATUS_SUCCESS || check.state != CUBLAS_STATUS_SUCCESS ||
      check.workspaceSize > kWorkspaceBytes) {
    ++stats_.rejected;
    p.replaces_stored = true;
    return false;
  }
  p.algo = algo;
  p.supported = true;
  p.status = CUBLAS_STATUS_SUCCESS;
  ++stats_.loaded;
  return true;
}

// Runs every candidate on the call's own operands: out is only written (beta = 0), so the runs are repeats of the
// call itself, and linear() then runs the chosen algorithm for the result. Timing waits for the stream: a cost
// paid once per problem, on its first call.
void Gemm::measure(const Key& key, Plan& p, const Operands& o) {
  // A graph being captured cannot be waited on, and a GEMM writing over its own input cannot be repeated: use the
  // heuristic's choice for now, and measure at a later call.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DITRUN_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
  if (capture != cudaStreamCaptureStatusNone || o.out_overlaps_input) {
    if (!p.deferred) ++stats_.deferred;
    p.deferred = true;
    return;
  }
  const auto started = std::chrono::steady_clock::now();
  const float alpha = 1.f, beta = 0.f;
  const auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(handle_, p.desc, &alpha, o.w, p.w, o.x, p.x, &beta, o.out, p.out, o.out, p.out, &algo,
                          workspace_, kWorkspaceBytes, stream_) == CUBLAS_STATUS_SUCCESS;
  };
  constexpr double kRefused = std::numeric_limits<double>::infinity();
  TimingEvents events;
  // Mean ms of `reps` back-to-back runs, or kRefused when cuBLASLt turns the algorithm down at launch.
  const auto time = [&](const cublasLtMatmulAlgo_t& algo, int reps) {
    DITRUN_CUDA_CHECK(cudaEventRecord(events.start, stream_));
    for (int i = 0; i < reps; ++i)
      if (!run(algo)) return kRefused;
    DITRUN_CUDA_CHECK(cudaEventRecord(events.stop, stream_));
    DITRUN_CUDA_CHECK(cudaEventSynchronize(events.stop));
    float ms = 0;
    DITRUN_CUDA_CHECK(cudaEventElapsedTime(&ms, events.start, events.stop));
    return static_cast<double>(ms) / reps;
  };

  const size_t count = p.candidates.size();
  std::vector<double> best(count, kRefused);
  std::vector<bool> usable(count, true);
  int reps = kMinReps;
  for (int round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < count; ++i) {
      if (!usable[i]) continue;
      if (round == 0) {
        for (int r = 0; r < kWarmupRuns && usable[i]; ++r) usable[i] = run(p.candidates[i]);
        if (!usable[i]) continue;
        if (i == 0) {  // the batch size from the heuristic's choice: about kBatchMs of work per batch
          const double once = time(p.candidates[0], 1);
          reps = std::clamp(static_cast<int>(kBatchMs / std::max(once, 1e-3)), kMinReps, kMaxReps);
        }
      }
      best[i] = std::min(best[i], time(p.candidates[i], reps));
      if (best[i] == kRefused) usable[i] = false;
    }
  }
  const size_t fastest = static_cast<size_t>(std::min_element(best.begin(), best.end()) - best.begin());
  const size_t chosen = best[fastest] < best[0] * (1 - kNoise) ? fastest : 0;
  p.algo = p.candidates[chosen];
  const bool measured = best[chosen] != kRefused;
  p.candidates.clear();
  p.candidates.shrink_to_fit();
  stats_.tuning_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (!measured) return;  // nothing ran: keep the heuristic's choice, unrecorded
  ++stats_.tuned;
  GemmTuningEntry entry{device_, key, {}, best[chosen] * 1e3, best[0] != kRefused ? best[0] * 1e3 : 0.0};
  std::memcpy(entry.algo.data(), p.algo.data, sizeof p.algo.data);
  tuning_file_->add(entry, p.replaces_stored);
}

const void* Gemm::staged_bias(const Tensor& bias, DType to) {
  const size_t bytes = static_cast<size_t>(bias.numel()) * dtype_size(to);
  if (bytes > bias_buffer_bytes_) {
    if (bias_buffer_) DITRUN_CUDA_CHECK(cudaFree(bias_buffer_));  // waits for matmuls still reading it
    bias_buffer_ = nullptr;
    bias_buffer_bytes_ = 0;
    DITRUN_CUDA_CHECK(cudaMalloc(&bias_buffer_, bytes));
    bias_buffer_bytes_ = bytes;
  }
  // Stream order makes reuse safe: this conversion runs after the previous matmul that read the buffer.
  convert(bias_buffer_, to, bias.data(), bias.dtype(), bias.numel(), stream_);
  return bias_buffer_;
}

void Gemm::linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue,
                  bool tf32) {
  const int64_t k = x.dim(-1), m = x.rows(), n = w.dim(0);
  if (w.numel() != n * k || out.rows() != m || out.dim(-1) != n || (bias && bias->numel() != n))
    throw std::invalid_argument("cuda linear: " + describe(out, x, w) +
                                (bias ? ", bias " + shape_string(bias->shape()) : std::string()));
  const bool types_ok = x.dtype() == w.dtype() &&
                        ((x.dtype() == DType::bf16 && (out.dtype() == DType::bf16 || out.dtype() == DType::f32)) ||
                         (x.dtype() == DType::f32 && out.dtype() == DType::f32)) &&
                        (!bias || bias->dtype() == DType::f32 || bias->dtype() == DType::bf16);
  if (!types_ok)
    throw std::invalid_argument("cuda linear: unsupported dtypes: " + describe(out, x, w) +
                                (bias ? ", bias " + std::string(dtype_name(bias->dtype())) : std::string()));
  if (m == 0 || n == 0) return;
  if (k == 0) throw std::invalid_argument("cuda linear: K = 0 (" + describe(out, x, w) + ")");

  Key key{m,
          n,
          k,
          x.dtype(),
          out.dtype(),
          bias ? static_cast<int>(bias->dtype()) : kNoBias,
          epilogue,
          alignment_of(w.data()),
          alignment_of(x.data()),
          alignment_of(out.data()),
          tf32 && x.dtype() == DType::f32};
  const void* bias_ptr = bias ? bias->data() : nullptr;
  // cuBLASLt takes a bias of D's type only (bf16 A/B: bf16 bias for bf16 D, f32 for f32 D; it answers
  // INVALID_VALUE otherwise), and its epilogue reads it with vector loads that no preference covers: any other
  // bias goes through a converted, aligned copy. The model's biases match their outputs, so this stays off the
  // hot path.
  if (bias && (bias->dtype() != out.dtype() || alignment_of(bias_ptr) < 16)) {
    bias_ptr = staged_bias(*bias, out.dtype());
    key.bias = static_cast<int>(out.dtype());
  }
  Plan* p = plan(key);
  if (!p->supported)
    throw std::runtime_error("cuda linear: cuBLASLt has no algorithm for " + describe(out, x, w) + ": " +
                             cublasLtGetStatusString(p->status));
  if (bias) set_desc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_ptr);
  if (!p->candidates.empty()) {
    const size_t in_size = dtype_size(x.dtype());
    const size_t out_bytes = static_cast<size_t>(m * n) * dtype_size(out.dtype());
    const bool out_overlaps_input =
        overlap(out.data(), out_bytes, x.data(), static_cast<size_t>(m * k) * in_size) ||
        overlap(out.data(), out_bytes, w.data(), static_cast<size_t>(n * k) * in_size) ||
        (bias && overlap(out.data(), out_bytes, bias_ptr, static_cast<size_t>(n) * dtype_size(out.dtype())));
    measure(key, *p, {w.data(), x.data(), out.data(), out_overlaps_input});
  }

  const float alpha = 1.f, beta = 0.f;
  DITRUN_CUBLAS_CHECK(cublasLtMatmul(handle_, p->desc, &alpha, w.data(), p->w, x.data(), p->x, &beta, out.data(),
                                     p->out, out.data(), p->out, &p->algo, workspace_, kWorkspaceBytes, stream_));
}

}  // namespace ditrun::cuda

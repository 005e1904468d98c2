#include "model/cuda/gemm.h"

#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/cublas_check.h"
#include "model/cuda/elementwise.h"

namespace ditrun::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

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

}  // namespace

Gemm::Gemm(cudaStream_t stream) : stream_(stream) {
  DITRUN_CUBLAS_CHECK(cublasLtCreate(&handle_));
  try {
    DITRUN_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  } catch (...) {
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
const Gemm::Plan* Gemm::plan(const Key& key) {
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

    cublasLtMatmulPreference_t pref = nullptr;
    DITRUN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    try {
      set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(kWorkspaceBytes));
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_out);
      set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_out);
      // A refusal (NOT_SUPPORTED, INVALID_VALUE, no result) is kept in the plan and reported by the caller.
      status = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.w, p.x, p.out, p.out, pref, 1, &result, &found);
    } catch (...) {
      cublasLtMatmulPreferenceDestroy(pref);
      throw;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p.status = status != CUBLAS_STATUS_SUCCESS ? status : found > 0 ? result.state : CUBLAS_STATUS_NOT_SUPPORTED;
    p.supported = p.status == CUBLAS_STATUS_SUCCESS;
    if (p.supported)
      p.algo = result.algo;
    else
      destroy(p.desc, p.w, p.x, p.out);
  } catch (...) {
    destroy(p.desc, p.w, p.x, p.out);
    throw;
  }
  return &plans_.emplace(key, p).first->second;
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
  const Plan* p = plan(key);
  if (!p->supported)
    throw std::runtime_error("cuda linear: cuBLASLt has no algorithm for " + describe(out, x, w) + ": " +
                             cublasLtGetStatusString(p->status));
  if (bias) set_desc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_ptr);

  const float alpha = 1.f, beta = 0.f;
  DITRUN_CUBLAS_CHECK(cublasLtMatmul(handle_, p->desc, &alpha, w.data(), p->w, x.data(), p->x, &beta, out.data(),
                                     p->out, out.data(), p->out, &p->algo, workspace_, kWorkspaceBytes, stream_));
}

}  // namespace ditrun::cuda

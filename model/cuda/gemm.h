// Linear layers on cuBLASLt: out[M,N] = x[M,K]·w[N,K]ᵀ + bias[N], with the bias and GELU-tanh fused into the
// GEMM epilogue. One cuBLASLt handle, one 32 MiB workspace, and a cache of descriptors and heuristic choices per
// problem, so repeated shapes (every block of every step) cost no heuristic query. Not thread-safe: it belongs
// to one CudaBackend and runs on its stream.
#pragma once
#include <compare>
#include <cstdint>
#include <map>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "model/core/backend.h"

namespace ditrun::cuda {

class Gemm {
 public:
  explicit Gemm(cudaStream_t stream);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // The Backend::linear contract. x,w bf16 -> out bf16 or f32; x,w f32 -> out f32 (fp32 math, no TF32 unless
  // `tf32`: f32 operands rounded to TF32 on tensor cores, fp32 accumulation; for the VAE's attention).
  // bias (optional) f32 or bf16 [N]; one of another dtype than out is converted first (cuBLASLt's rule).
  void linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue,
              bool tf32 = false);

 private:
  static constexpr int kNoBias = -1;
  struct Key {
    int64_t m, n, k;
    DType in, out;
    int bias;  // DType of the bias, or kNoBias
    Epilogue epilogue;
    // Base-pointer alignment (bytes, ≤ 256) of w, x and out: cuBLASLt picks kernels that rely on it.
    uint32_t align_w, align_x, align_out;
    bool tf32;
    auto operator<=>(const Key&) const = default;
  };
  struct Plan {
    bool supported = false;
    cublasStatus_t status = CUBLAS_STATUS_NOT_SUPPORTED;  // the heuristic's answer when not supported
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w = nullptr, x = nullptr, out = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  // The cached plan for key, built on first use (also when cuBLASLt has no algorithm: supported is false).
  const Plan* plan(const Key& key);
  // A 256-byte-aligned copy of bias in dtype `to`, for when cuBLASLt does not take the bias as given.
  const void* staged_bias(const Tensor& bias, DType to);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  void* bias_buffer_ = nullptr;
  size_t bias_buffer_bytes_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace ditrun::cuda

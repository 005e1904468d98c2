// Linear layers on cuBLASLt: out[M,N] = x[M,K]·w[N,K]ᵀ + bias[N], with the bias and GELU-tanh fused into the
// GEMM epilogue. One cuBLASLt handle, one 32 MiB workspace, and a cache of descriptors and heuristic choices per
// problem, so repeated shapes (every block of every step) cost no heuristic query. Not thread-safe: it belongs
// to one CudaBackend and runs on its stream.
//
// With a tuning file (gemm_tuning_cache.h) the algorithm is chosen by measurement instead: the first call of each
// problem times up to kTuningCandidates of the heuristic's algorithms on the call's own operands and keeps the
// fastest, or takes the choice the file already holds for this GPU; the file is written after each measurement.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "model/core/backend.h"
#include "model/cuda/gemm_tuning_cache.h"

namespace ditrun::cuda {

class Gemm {
 public:
  // An empty tuning_file: the heuristic's first choice for every problem (no measuring, no file).
  explicit Gemm(cudaStream_t stream, const std::filesystem::path& tuning_file = {});
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // The Backend::linear contract. x,w bf16 -> out bf16 or f32; x,w f32 -> out f32 (fp32 math, no TF32 unless
  // `tf32`: f32 operands rounded to TF32 on tensor cores, fp32 accumulation; for the VAE's attention).
  // bias (optional) f32 or bf16 [N]; one of another dtype than out is converted first (cuBLASLt's rule).
  void linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue,
              bool tf32 = false);

  const GemmTuningStats& tuning_stats() const { return stats_; }

  // Heuristic candidates measured per problem (those that fit the workspace and that cuBLASLt accepts).
  static constexpr int kTuningCandidates = 16;

 private:
  using Key = GemmProblem;
  static constexpr int kNoBias = GemmProblem::kNoBias;
  struct Plan {
    bool supported = false;
    cublasStatus_t status = CUBLAS_STATUS_NOT_SUPPORTED;  // the heuristic's answer when not supported
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w = nullptr, x = nullptr, out = nullptr;
    cublasLtMatmulAlgo_t algo{};  // the heuristic's first choice until measured
    // Tuning: the heuristic's candidates (first = its own choice), kept until they are measured.
    std::vector<cublasLtMatmulAlgo_t> candidates;
    bool deferred = false;         // measuring was put off once (counted in the stats once)
    bool replaces_stored = false;  // the tuning file's entry failed the check: the measurement replaces it
  };
  struct Operands {
    const void* w;
    const void* x;
    void* out;
    bool out_overlaps_input;  // then the call cannot be repeated for timing
  };

  // The cached plan for key, built on first use (also when cuBLASLt has no algorithm: supported is false).
  Plan* plan(const Key& key);
  // The tuning file's choice for key when it passes cublasLtMatmulAlgoCheck.
  bool load_tuned(const Key& key, Plan& p);
  // Times p's candidates on the call's operands and keeps the fastest (see gemm.cc); puts it off during graph
  // capture. p's bias pointer is set.
  void measure(const Key& key, Plan& p, const Operands& operands);
  // A 256-byte-aligned copy of bias in dtype `to`, for when cuBLASLt does not take the bias as given.
  const void* staged_bias(const Tensor& bias, DType to);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  void* bias_buffer_ = nullptr;
  size_t bias_buffer_bytes_ = 0;
  std::map<Key, Plan> plans_;
  std::unique_ptr<GemmTuningFile> tuning_file_;  // null: tuning off
  GemmDevice device_;                            // what this GPU's entries are keyed by (when tuning)
  GemmTuningStats stats_;
};

}  // namespace ditrun::cuda

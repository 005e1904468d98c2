// The fixture of the CUDA op tests (cuda_ops_test.cc, cuda_video_ops_test.cc, cuda_text_ops_test.cc): every
// CudaBackend op against the CpuBackend op on deterministic random data, odd sizes included. The CPU op is given the
// bf16-rounded values the CUDA op sees, so each comparison measures the op, not the input rounding. Without a GPU
// every test reports "skipped: no CUDA device" and the binary passes. One named namespace, so the three files'
// tests share one fixture class (gtest requires it of a test suite).
#pragma once
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/core/half.h"
#include "model/cpu/cpu_backend.h"
#include "model/cuda/cuda_backend.h"
#include "tests/relative_l2.h"

namespace ditrun::cuda_ops_testing {

using ditrun::testing::relative_l2;

// Bounds on the relative L2 error ‖gpu − cpu‖/‖cpu‖ (measured maxima on an H200 for this file's cases: bf16
// outputs 1.5e-3 to 3.3e-3, f32 reductions ≤ 3.7e-6, f32 element-wise ≤ 5.1e-8):
// One rounding of the output to bf16 moves each element by at most 2^-8 ≈ 3.91e-3 of itself, so the ratio stays
// below that too; the fp32 math underneath differs by ~1e-6. Every op with bf16 output rounds exactly once.
constexpr double kBf16Out = 4e-3;
// f32 output of a reduction (norm statistics, GEMM dot products over ≤ 1536 terms) in another summation order
// than the CPU's: ~1e-6 expected.
constexpr double kF32Reduction = 1e-5;
// bf16 inputs, f32 output of cuBLASLt: products are exact in fp32, only summation order differs (~1e-6). 5e-5 is
// also 4x below the ~2e-4 gap between GELU-tanh and GELU-erf, so it pins the epilogue's GELU form.
constexpr double kGemmBf16InF32Out = 5e-5;
// f32 operands rounded to TF32 (10-bit mantissa: ≤ 2^-11 ≈ 4.9e-4 each) with fp32 accumulation: ~5e-4.
constexpr double kTf32Gemm = 2e-3;
// Element-wise f32 math (one or two roundings, FMA contraction on the GPU): ~1e-7.
constexpr double kF32Elementwise = 1e-6;
// Attention output: the bf16 output rounding (≤ 3.9e-3, ~1.6e-3 RMS) plus the probabilities rounded to bf16
// before P·V (partly averaged out over 500 keys); 1.9e-3 measured on an H200.
constexpr double kAttentionOut = 5e-3;
// log-sum-exp in fp32 from the same bf16 q/k (exp2/log approximations ~1e-7 relative to values of ~6;
// 5e-8 measured).
constexpr double kAttentionLse = 1e-5;

inline bool has_cuda_device() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();  // a failed query (no driver) is not an error for this test
  return ok;
}

// Deterministic uniform numbers (splitmix64), the same on every platform.
inline std::vector<float> random(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& x : v) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    x = lo + (hi - lo) * static_cast<float>((z >> 40) * 0x1.0p-24);
  }
  return v;
}

inline std::vector<float> rounded(std::vector<float> v, DType as) {
  if (as == DType::bf16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

inline std::string label(const char* what, std::initializer_list<int64_t> sizes, DType a = DType::f32,
                  DType b = DType::f32) {
  std::string s = what;
  for (int64_t v : sizes) s += " " + std::to_string(v);
  return s + " " + std::string(dtype_name(a)) + "->" + std::string(dtype_name(b));
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!has_cuda_device()) GTEST_SKIP() << "skipped: no CUDA device";
    gpu_ = std::make_unique<CudaBackend>();
  }

  // A GPU tensor of `dtype` holding `values` (rounded on upload when bf16).
  Tensor gpu(const std::vector<float>& values, const Shape& shape, DType dtype) {
    Tensor t = gpu_->allocate(shape, dtype);
    gpu_->upload(t, values.data());
    return t;
  }
  // The CPU (f32) twin of gpu(values, shape, as): the same values after the same rounding.
  Tensor cpu(const std::vector<float>& values, const Shape& shape, DType as = DType::f32) {
    Tensor t = cpu_.allocate(shape, DType::f32);
    const std::vector<float> v = rounded(values, as);
    cpu_.upload(t, v.data());
    return t;
  }
  static std::vector<float> fetch(Backend& b, const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    b.download(t, v.data());
    return v;
  }

  void check_linear(int64_t m, int64_t n, int64_t k, DType in, DType out, std::optional<DType> bias, Epilogue ep,
                    double bound, uint64_t seed = 1) {
    // Pre-activations ~N(0, 1): x, w uniform with var(x·w) = 1, so GELU sees its curved region.
    const auto xs = random(m * k, seed), ws = random(n * k, seed + 1, -3.f / std::sqrt(float(k)),
                                                      3.f / std::sqrt(float(k)));
    const auto bs = random(n, seed + 2, -0.5f, 0.5f);
    Tensor gx = gpu(xs, {m, k}, in), gw = gpu(ws, {n, k}, in), go = gpu_->allocate({m, n}, out);
    Tensor cx = cpu(xs, {m, k}, in), cw = cpu(ws, {n, k}, in), co = cpu_.allocate({m, n}, DType::f32);
    Tensor gb, cb;
    if (bias) {
      gb = gpu(bs, {n}, *bias);
      cb = cpu(bs, {n}, *bias);
    }
    gpu_->linear(go, gx, gw, bias ? &gb : nullptr, ep);
    cpu_.linear(co, cx, cw, bias ? &cb : nullptr, ep);
    EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), bound)
        << label("linear m n k", {m, n, k}, in, out) << " bias " << (bias ? dtype_name(*bias) : "none")
        << (ep == Epilogue::gelu_tanh ? " gelu" : "");
  }

  CpuBackend cpu_;
  std::unique_ptr<CudaBackend> gpu_;
};

struct GemmSize {
  int64_t m, n, k;
};
inline constexpr GemmSize kSmallGemms[] = {{1, 1, 1}, {37, 53, 71}, {300, 130, 257}};
inline constexpr int64_t kRows[] = {1, 7, 129};
// 2053 (scalar loads) and 8200 (16-byte loads of f32) are past what the norm kernel holds in registers.
inline constexpr int64_t kWidths[] = {37, 48, 130, 1536, 2053, 8200};

}  // namespace ditrun::cuda_ops_testing

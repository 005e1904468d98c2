// Every CudaBackend op against the CpuBackend op on deterministic random data, odd sizes included. The CPU op is
// given the bf16-rounded values the CUDA op sees, so each comparison measures the op, not the input rounding.
// Without a GPU every test reports "skipped: no CUDA device" and the binary passes.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "model/core/half.h"
#include "model/core/philox.h"
#include "tests/relative_l2.h"
#include "model/cpu/cpu_backend.h"
#include "model/cuda/conv3d_igemm.h"
#include "model/cuda/cuda_backend.h"
#include "model/cuda/gemm_tuning_cache.h"

using namespace ditrun;

namespace {

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

bool has_cuda_device() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();  // a failed query (no driver) is not an error for this test
  return ok;
}

// Deterministic uniform numbers (splitmix64), the same on every platform.
std::vector<float> random(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
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

std::vector<float> rounded(std::vector<float> v, DType as) {
  if (as == DType::bf16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}


std::string label(const char* what, std::initializer_list<int64_t> sizes, DType a = DType::f32,
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
const GemmSize kSmallGemms[] = {{1, 1, 1}, {37, 53, 71}, {300, 130, 257}};
const int64_t kRows[] = {1, 7, 129};
// 2053 (scalar loads) and 8200 (16-byte loads of f32) are past what the norm kernel holds in registers.
const int64_t kWidths[] = {37, 48, 130, 1536, 2053, 8200};

// ------------------------------------------------------------------------------------------------ memory

TEST_F(CudaOps, UploadDownloadCopy) {
  const size_t n = 1001;
  const auto v = random(n, 7, -100.f, 100.f);
  Tensor f = gpu(v, {int64_t(n)}, DType::f32), b = gpu(v, {int64_t(n)}, DType::bf16);
  EXPECT_EQ(fetch(*gpu_, f), v);
  EXPECT_EQ(fetch(*gpu_, b), rounded(v, DType::bf16));
  Tensor b2 = gpu_->allocate({int64_t(n)}, DType::bf16), f2 = gpu_->allocate({int64_t(n)}, DType::f32);
  gpu_->copy(b2, f);  // f32 -> bf16 on the device rounds like the host
  EXPECT_EQ(fetch(*gpu_, b2), rounded(v, DType::bf16));
  gpu_->copy(f2, b);
  EXPECT_EQ(fetch(*gpu_, f2), rounded(v, DType::bf16));
  gpu_->copy(f2, f);
  EXPECT_EQ(fetch(*gpu_, f2), v);
  Tensor wrong = gpu_->allocate({int64_t(n) + 1}, DType::f32);
  EXPECT_THROW(gpu_->copy(wrong, f), std::invalid_argument);

  // Larger than the 64 MiB staging buffer: bf16 transfers go in pieces.
  const size_t big = (size_t{16} << 20) + 12345;
  const auto w = random(big, 8);
  Tensor g = gpu(w, {int64_t(big)}, DType::bf16);
  EXPECT_EQ(fetch(*gpu_, g), rounded(w, DType::bf16));

  Tensor s = gpu_->scratch({3, 5}, DType::bf16);
  EXPECT_EQ(s.device(), Device::cuda);
  gpu_->upload(s, v.data());
  EXPECT_EQ(fetch(*gpu_, s), rounded(std::vector<float>(v.begin(), v.begin() + 15), DType::bf16));
}

// ------------------------------------------------------------------------------------------------ linear

TEST_F(CudaOps, LinearBf16) {
  std::vector<GemmSize> sizes(std::begin(kSmallGemms), std::end(kSmallGemms));
  sizes.push_back({4096, 1536, 1536});
  for (const auto& s : sizes) {
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, std::nullopt, Epilogue::none, kBf16Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, DType::bf16, Epilogue::none, kBf16Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, DType::bf16, Epilogue::gelu_tanh, kBf16Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, std::nullopt, Epilogue::gelu_tanh, kBf16Out);
  }
}

TEST_F(CudaOps, LinearBf16ToF32) {
  for (const auto& s : kSmallGemms) {
    check_linear(s.m, s.n, s.k, DType::bf16, DType::f32, std::nullopt, Epilogue::none, kGemmBf16InF32Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::f32, DType::f32, Epilogue::none, kGemmBf16InF32Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::f32, DType::f32, Epilogue::gelu_tanh, kGemmBf16InF32Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::f32, std::nullopt, Epilogue::gelu_tanh, kGemmBf16InF32Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::f32, DType::bf16, Epilogue::gelu_tanh, kGemmBf16InF32Out);
  }
}

// cuBLASLt takes the bias in the output's type, so this f32 bias is rounded to bf16 first: a second rounding,
// of a term of |y|'s size at most; still inside kBf16Out on these cases (3.2e-3 measured).
TEST_F(CudaOps, LinearBf16WithF32Bias) {
  for (const auto& s : kSmallGemms) {
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, DType::f32, Epilogue::none, kBf16Out);
    check_linear(s.m, s.n, s.k, DType::bf16, DType::bf16, DType::f32, Epilogue::gelu_tanh, kBf16Out);
  }
}

TEST_F(CudaOps, LinearF32) {
  std::vector<GemmSize> sizes(std::begin(kSmallGemms), std::end(kSmallGemms));
  sizes.push_back({1, 1536, 256});   // time embedding
  sizes.push_back({1, 9216, 1536});  // time projection (6·D)
  for (const auto& s : sizes) {
    check_linear(s.m, s.n, s.k, DType::f32, DType::f32, std::nullopt, Epilogue::none, kF32Reduction);
    check_linear(s.m, s.n, s.k, DType::f32, DType::f32, DType::f32, Epilogue::none, kF32Reduction);
    check_linear(s.m, s.n, s.k, DType::f32, DType::f32, DType::f32, Epilogue::gelu_tanh, kF32Reduction);
    check_linear(s.m, s.n, s.k, DType::f32, DType::f32, std::nullopt, Epilogue::gelu_tanh, kF32Reduction);
  }
}

// Views at odd offsets: x and out start 2-byte aligned, the bias 4-byte aligned (the staged-bias path).
TEST_F(CudaOps, LinearMisalignedViews) {
  const int64_t m = 37, n = 53, k = 71;
  const auto xs = random((m + 1) * k, 11), ws = random(n * k, 12, -0.3f, 0.3f), bs = random(n + 1, 13);
  Tensor gx = gpu(xs, {m + 1, k}, DType::bf16).slice(1, m + 1), gw = gpu(ws, {n, k}, DType::bf16);
  Tensor gb = gpu(bs, {n + 1}, DType::f32).slice(1, n + 1);
  Tensor gbig = gpu_->allocate({m + 1, n}, DType::bf16), go = gbig.slice(1, m + 1);
  Tensor cx = cpu(xs, {m + 1, k}, DType::bf16).slice(1, m + 1), cw = cpu(ws, {n, k}, DType::bf16);
  Tensor cb = cpu(bs, {n + 1}).slice(1, n + 1), co = cpu_.allocate({m, n}, DType::f32);
  for (Epilogue ep : {Epilogue::none, Epilogue::gelu_tanh}) {
    gpu_->linear(go, gx, gw, &gb, ep);
    cpu_.linear(co, cx, cw, &cb, ep);
    EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), kBf16Out);
  }
}

TEST_F(CudaOps, LinearRejectsBadArguments) {
  Tensor x = gpu_->allocate({4, 8}, DType::bf16), w = gpu_->allocate({5, 8}, DType::bf16);
  Tensor out = gpu_->allocate({4, 5}, DType::bf16), wrong = gpu_->allocate({4, 6}, DType::bf16);
  Tensor wf = gpu_->allocate({5, 8}, DType::f32), xf = gpu_->allocate({4, 8}, DType::f32);
  Tensor bias_wrong = gpu_->allocate({6}, DType::f32);
  EXPECT_THROW(gpu_->linear(wrong, x, w, nullptr, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(gpu_->linear(out, x, wf, nullptr, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(gpu_->linear(out, xf, wf, nullptr, Epilogue::none), std::invalid_argument);  // f32 in, bf16 out
  EXPECT_THROW(gpu_->linear(out, x, w, &bias_wrong, Epilogue::none), std::invalid_argument);
  Tensor host = cpu_.allocate({4, 8}, DType::f32);
  EXPECT_THROW(gpu_->linear(out, host, w, nullptr, Epilogue::none), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------ GEMM tuning

// Choice by measurement with a tuning file (model/cuda/gemm.h, gemm_tuning_cache.h): a backend made with a fresh
// file measures each problem once and writes it down; its results match the heuristic's choice within the GEMM
// tolerance; a second backend loads the choices (no measuring) and reproduces the first one's results bit for
// bit; a problem first met while a graph is captured keeps the heuristic's choice and is measured at a later call.
TEST_F(CudaOps, GemmTuningMeasuresOnceThenLoadsFromTheFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("ditrun_gemm_tuning_gpu_" + std::to_string(::getpid()));
  const fs::path file = dir / "tuning.txt";
  fs::remove_all(dir);
  struct Restore {  // the process-wide setting and the folder, also when an assertion ends the test
    fs::path dir;
    ~Restore() {
      cuda::set_gemm_tuning_file({});
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } restore{dir};

  // The 1.3B's projection, FFN up (GELU) and FFN down shapes at 2048 tokens.
  struct Case {
    int64_t m, n, k;
    DType out;
    bool bias;
    Epilogue ep;
  };
  const Case cases[] = {{2048, 1536, 1536, DType::bf16, true, Epilogue::none},
                        {2048, 8960, 1536, DType::bf16, true, Epilogue::gelu_tanh},
                        {2048, 1536, 8960, DType::f32, false, Epilogue::none}};
  struct Operands {
    Tensor x, w, b;
  };
  std::vector<Operands> operands;
  std::vector<std::vector<float>> heuristic;  // gpu_ was made without a tuning file
  for (const Case& c : cases) {
    const float bound = 1.f / std::sqrt(static_cast<float>(c.k));
    Operands o{gpu(random(c.m * c.k, 301 + c.n), {c.m, c.k}, DType::bf16),
               gpu(random(c.n * c.k, 302 + c.k, -bound, bound), {c.n, c.k}, DType::bf16),
               gpu(random(c.n, 303, -0.5f, 0.5f), {c.n}, c.out)};
    Tensor out = gpu_->allocate({c.m, c.n}, c.out);
    gpu_->linear(out, o.x, o.w, c.bias ? &o.b : nullptr, c.ep);
    heuristic.push_back(fetch(*gpu_, out));
    operands.push_back(std::move(o));
  }
  const auto run_all = [&](CudaBackend& be) {
    std::vector<std::vector<float>> results;
    for (size_t i = 0; i < std::size(cases); ++i) {
      const Case& c = cases[i];
      Tensor out = be.allocate({c.m, c.n}, c.out);
      be.linear(out, operands[i].x, operands[i].w, c.bias ? &operands[i].b : nullptr, c.ep);
      results.push_back(fetch(be, out));
    }
    return results;
  };

  cuda::set_gemm_tuning_file(file);
  std::vector<std::vector<float>> tuned_results;
  {
    CudaBackend tuned;
    tuned_results = run_all(tuned);
    EXPECT_EQ(tuned.gemm_tuning_stats().tuned, 3) << "every problem measured (each has several candidates)";
    EXPECT_EQ(tuned.gemm_tuning_stats().loaded, 0);
    EXPECT_GT(tuned.gemm_tuning_stats().tuning_ms, 0);
    for (size_t i = 0; i < std::size(cases); ++i)
      EXPECT_LE(relative_l2(tuned_results[i], heuristic[i]),
                cases[i].out == DType::bf16 ? kBf16Out : kGemmBf16InF32Out)
          << "tuned vs heuristic, case " << i;
    run_all(tuned);
    EXPECT_EQ(tuned.gemm_tuning_stats().tuned, 3) << "measured once per problem";
  }

  std::ifstream in(file);
  ASSERT_TRUE(in) << file;
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const cuda::ParsedTuningText parsed = cuda::parse_tuning_text(text);
  EXPECT_TRUE(parsed.ours);
  EXPECT_EQ(parsed.bad_lines, 0);
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, gpu_->device_index()), cudaSuccess);
  for (const Case& c : cases) {
    const bool found = std::any_of(parsed.entries.begin(), parsed.entries.end(), [&](const cuda::GemmTuningEntry& e) {
      return e.device.gpu == prop.name && e.problem.m == c.m && e.problem.n == c.n && e.problem.k == c.k;
    });
    EXPECT_TRUE(found) << "no entry for " << c.m << " " << c.n << " " << c.k << " in\n" << text;
  }

  {
    CudaBackend loaded;
    const auto loaded_results = run_all(loaded);
    EXPECT_EQ(loaded.gemm_tuning_stats().loaded, 3);
    EXPECT_EQ(loaded.gemm_tuning_stats().tuned, 0) << "nothing measured again";
    EXPECT_EQ(loaded.gemm_tuning_stats().rejected, 0);
    for (size_t i = 0; i < std::size(cases); ++i)
      EXPECT_EQ(loaded_results[i], tuned_results[i]) << "the stored algorithm is the measured one, case " << i;

    // A new problem first met inside a capture: the heuristic's choice in the graph, measured at the next call.
    const int64_t m = 512, n = 1536, k = 4096;
    Tensor x = gpu(random(m * k, 311), {m, k}, DType::bf16), w = gpu(random(n * k, 312, -0.02f, 0.02f), {n, k},
                                                                     DType::bf16);
    Tensor captured = loaded.allocate({m, n}, DType::bf16), direct = loaded.allocate({m, n}, DType::bf16);
    loaded.synchronize();
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(loaded.stream(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
    loaded.linear(captured, x, w, nullptr, Epilogue::none);
    ASSERT_EQ(cudaStreamEndCapture(loaded.stream(), &graph), cudaSuccess);
    EXPECT_EQ(loaded.gemm_tuning_stats().deferred, 1);
    EXPECT_EQ(loaded.gemm_tuning_stats().tuned, 0);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, loaded.stream()), cudaSuccess);
    loaded.linear(direct, x, w, nullptr, Epilogue::none);
    EXPECT_EQ(loaded.gemm_tuning_stats().tuned, 1) << "measured at the first call outside the capture";
    EXPECT_LE(relative_l2(fetch(loaded, direct), fetch(loaded, captured)), kBf16Out);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  CudaBackend reloaded;
  Tensor x = gpu(random(512 * 4096, 311), {512, 4096}, DType::bf16);
  Tensor w = gpu(random(1536 * 4096, 312, -0.02f, 0.02f), {1536, 4096}, DType::bf16);
  Tensor out = reloaded.allocate({512, 1536}, DType::bf16);
  reloaded.linear(out, x, w, nullptr, Epilogue::none);
  reloaded.synchronize();
  EXPECT_EQ(reloaded.gemm_tuning_stats().loaded, 1) << "the entry measured after the capture was written too";
}

// ------------------------------------------------------------------------------------------------ norms

TEST_F(CudaOps, LayerNorm) {
  for (int64_t rows : kRows)
    for (int64_t d : kWidths) {
      // A mean of 3 makes a one-pass variance (E[x²] − E[x]²) visibly wrong at the f32 bound.
      const auto xs = random(rows * d, rows * 100 + d, 2.f, 4.f);
      const auto ws = random(d, 3, 0.5f, 1.5f), bs = random(d, 4, -0.5f, 0.5f);
      Tensor gw = gpu(ws, {d}, DType::f32), gb = gpu(bs, {d}, DType::f32);
      Tensor cw = cpu(ws, {d}), cb = cpu(bs, {d});
      for (DType in : {DType::f32, DType::bf16})
        for (DType out : {DType::f32, DType::bf16})
          for (bool affine : {false, true}) {
            Tensor gx = gpu(xs, {rows, d}, in), go = gpu_->allocate({rows, d}, out);
            Tensor cx = cpu(xs, {rows, d}, in), co = cpu_.allocate({rows, d}, DType::f32);
            gpu_->layer_norm(go, gx, affine ? &gw : nullptr, affine ? &gb : nullptr, 1e-6f);
            cpu_.layer_norm(co, cx, affine ? &cw : nullptr, affine ? &cb : nullptr, 1e-6f);
            EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), out == DType::bf16 ? kBf16Out : kF32Reduction)
                << label("layer_norm rows d", {rows, d}, in, out) << (affine ? " affine" : "");
          }
    }
}

TEST_F(CudaOps, LayerNormModulate) {
  for (int64_t rows : kRows)
    for (int64_t d : kWidths) {
      const auto xs = random(rows * d, rows * 100 + d + 1, -2.f, 3.f);
      const auto shift = random(d, 5, -0.5f, 0.5f), scale = random(d, 6, -0.5f, 0.5f);
      Tensor gsh = gpu(shift, {d}, DType::f32), gsc = gpu(scale, {d}, DType::f32);
      Tensor csh = cpu(shift, {d}), csc = cpu(scale, {d});
      for (DType out : {DType::f32, DType::bf16}) {
        Tensor gx = gpu(xs, {rows, d}, DType::f32), go = gpu_->allocate({rows, d}, out);
        Tensor cx = cpu(xs, {rows, d}), co = cpu_.allocate({rows, d}, DType::f32);
        gpu_->layer_norm_modulate(go, gx, gsh, gsc, 1e-6f);
        cpu_.layer_norm_modulate(co, cx, csh, csc, 1e-6f);
        EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), out == DType::bf16 ? kBf16Out : kF32Reduction)
            << label("layer_norm_modulate rows d", {rows, d}, DType::f32, out);
      }
    }
}

TEST_F(CudaOps, RmsNorm) {
  for (int64_t rows : kRows)
    for (int64_t d : kWidths) {
      const auto xs = random(rows * d, rows * 100 + d + 2, -3.f, 2.f), ws = random(d, 7, 0.5f, 1.5f);
      Tensor gw = gpu(ws, {d}, DType::f32), cw = cpu(ws, {d});
      Tensor cx = cpu(xs, {rows, d}), co = cpu_.allocate({rows, d}, DType::f32);
      cpu_.rms_norm(co, cx, cw, 1e-6f);
      const auto want = fetch(cpu_, co);
      // f32 -> bf16 (the q/k norm output), and in place for f32.
      Tensor gx = gpu(xs, {rows, d}, DType::f32), go = gpu_->allocate({rows, d}, DType::bf16);
      gpu_->rms_norm(go, gx, gw, 1e-6f);
      EXPECT_LE(relative_l2(fetch(*gpu_, go), want), kBf16Out) << label("rms_norm rows d", {rows, d}, DType::f32, DType::bf16);
      gpu_->rms_norm(gx, gx, gw, 1e-6f);
      EXPECT_LE(relative_l2(fetch(*gpu_, gx), want), kF32Reduction) << label("rms_norm in place rows d", {rows, d});
      // bf16 in place, as the model applies it to the q/k projections.
      Tensor gb = gpu(xs, {rows, d}, DType::bf16), cxb = cpu(xs, {rows, d}, DType::bf16);
      gpu_->rms_norm(gb, gb, gw, 1e-6f);
      cpu_.rms_norm(co, cxb, cw, 1e-6f);
      EXPECT_LE(relative_l2(fetch(*gpu_, gb), fetch(cpu_, co)), kBf16Out)
          << label("rms_norm in place rows d", {rows, d}, DType::bf16, DType::bf16);
    }
}

TEST_F(CudaOps, NormsRejectBadArguments) {
  Tensor x = gpu_->allocate({4, 8}, DType::f32), out = gpu_->allocate({4, 9}, DType::bf16);
  Tensor w = gpu_->allocate({8}, DType::f32), w_wrong = gpu_->allocate({9}, DType::f32);
  EXPECT_THROW(gpu_->layer_norm(out, x, nullptr, nullptr, 1e-6f), std::invalid_argument);
  EXPECT_THROW(gpu_->rms_norm(x, x, w_wrong, 1e-6f), std::invalid_argument);
  Tensor alias(x.data(), DType::bf16, Device::cuda, {4, 8});
  EXPECT_THROW(gpu_->rms_norm(alias, x, w, 1e-6f), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------ element-wise

TEST_F(CudaOps, Rope) {
  struct Case {
    int64_t l, h, d, table_rows;
  };
  for (const Case c : {Case{37, 3, 64, 30}, Case{5, 2, 9, 5}}) {
    const int64_t pairs = c.d / 2;
    const auto xs = random(c.l * c.h * c.d, 21 + c.d), angles = random(c.table_rows * pairs, 22, -3.2f, 3.2f);
    std::vector<float> cs(angles.size()), sn(angles.size());
    for (size_t i = 0; i < angles.size(); ++i) {
      cs[i] = static_cast<float>(std::cos(static_cast<double>(angles[i])));
      sn[i] = static_cast<float>(std::sin(static_cast<double>(angles[i])));
    }
    Tensor gc = gpu(cs, {c.table_rows, pairs}, DType::f32), gs = gpu(sn, {c.table_rows, pairs}, DType::f32);
    Tensor cc = cpu(cs, {c.table_rows, pairs}), csn = cpu(sn, {c.table_rows, pairs});
    for (DType t : {DType::f32, DType::bf16}) {
      Tensor gx = gpu(xs, {c.l, c.h, c.d}, t), cx = cpu(xs, {c.l, c.h, c.d}, t);
      gpu_->rope(gx, gc, gs);
      cpu_.rope(cx, cc, csn);
      const auto got = fetch(*gpu_, gx), want = fetch(cpu_, cx);
      EXPECT_LE(relative_l2(got, want), t == DType::bf16 ? kBf16Out : kF32Elementwise)
          << label("rope l h d", {c.l, c.h, c.d}, t, t);
      // Tokens beyond the table are untouched, bit for bit.
      const size_t first = static_cast<size_t>(c.table_rows * c.h * c.d);
      EXPECT_EQ(std::vector<float>(got.begin() + first, got.end()),
                std::vector<float>(want.begin() + first, want.end()));
    }
    Tensor gx = gpu(xs, {c.l, c.h, c.d}, DType::f32);
    Tensor narrow = gpu_->allocate({c.table_rows, pairs + 1}, DType::f32);
    EXPECT_THROW(gpu_->rope(gx, narrow, narrow), std::invalid_argument);
  }
}

// The fused q/k step of spec §1.5-1.6 (DiT::attention_inputs): bit for bit the unfused CUDA rms_norm + rope
// (same sums in the same order, the norm rounded to the storage dtype before the rotation), and near the CPU
// composition. Heads of the 1.3B/14B (12/40 × 128) and tiny (4 × 32) models; 77 tokens with a shorter table
// (padding left unrotated); a head of 6 (pairs of two heads in one 16-byte pack), a row without 16-byte packs
// (the two-kernel path) and one longer than the register cache.
TEST_F(CudaOps, RmsNormRope) {
  struct Case {
    int64_t l, h, d, table_rows;
  };
  // bf16 on the GPU rounds twice (the norm's output, then the rotated pair), the CPU never: ≤ 2·2^-9 relative
  // per element, ~1.6e-3 RMS expected.
  constexpr double kBf16TwoRoundings = 2 * kBf16Out;
  for (const Case c : {Case{77, 12, 128, 77}, Case{77, 40, 128, 70}, Case{77, 4, 32, 77}, Case{13, 4, 6, 10},
                       Case{5, 3, 10, 5}, Case{3, 136, 128, 3}}) {
    const int64_t pairs = c.d / 2, width = c.h * c.d;
    const auto xs = random(c.l * width, 41 + c.h * c.d, -3.f, 2.f), ws = random(width, 42, 0.5f, 1.5f);
    const auto angles = random(c.table_rows * pairs, 43, -3.2f, 3.2f);
    std::vector<float> cs(angles.size()), sn(angles.size());
    for (size_t i = 0; i < angles.size(); ++i) {
      cs[i] = static_cast<float>(std::cos(static_cast<double>(angles[i])));
      sn[i] = static_cast<float>(std::sin(static_cast<double>(angles[i])));
    }
    Tensor gw = gpu(ws, {width}, DType::f32), cw = cpu(ws, {width});
    Tensor gc = gpu(cs, {c.table_rows, pairs}, DType::f32), gs = gpu(sn, {c.table_rows, pairs}, DType::f32);
    Tensor cc = cpu(cs, {c.table_rows, pairs}), csn = cpu(sn, {c.table_rows, pairs});
    for (DType t : {DType::f32, DType::bf16}) {
      const std::string what = label("rms_norm_rope l h d", {c.l, c.h, c.d}, t, t);
      Tensor fused = gpu(xs, {c.l, c.h, c.d}, t);
      gpu_->rms_norm_rope(fused, gw, 1e-6f, gc, gs);
      Tensor unfused = gpu(xs, {c.l, c.h, c.d}, t), unfused_rows = unfused.view({c.l, width});
      gpu_->rms_norm(unfused_rows, unfused_rows, gw, 1e-6f);
      gpu_->rope(unfused, gc, gs);
      Tensor cx = cpu(xs, {c.l, c.h, c.d}, t);
      cpu_.rms_norm_rope(cx, cw, 1e-6f, cc, csn);
      const auto got = fetch(*gpu_, fused), twice = fetch(*gpu_, unfused);
      ASSERT_EQ(got.size(), twice.size());
      EXPECT_EQ(std::memcmp(got.data(), twice.data(), got.size() * sizeof(float)), 0) << what << ": not bitwise";
      EXPECT_LE(relative_l2(got, fetch(cpu_, cx)), t == DType::bf16 ? kBf16TwoRoundings : kF32Reduction) << what;
    }
  }
  Tensor x = gpu_->allocate({4, 2, 8}, DType::bf16), w = gpu_->allocate({16}, DType::f32);
  Tensor w_wrong = gpu_->allocate({8}, DType::f32), table = gpu_->allocate({4, 4}, DType::f32);
  Tensor narrow = gpu_->allocate({4, 5}, DType::f32), flat = x.view({4, 16});
  EXPECT_THROW(gpu_->rms_norm_rope(x, w_wrong, 1e-6f, table, table), std::invalid_argument);
  EXPECT_THROW(gpu_->rms_norm_rope(x, w, 1e-6f, narrow, narrow), std::invalid_argument);
  EXPECT_THROW(gpu_->rms_norm_rope(flat, w, 1e-6f, table, table), std::invalid_argument);
}

TEST_F(CudaOps, AddGatedAndAdd) {
  for (int64_t rows : kRows)
    for (int64_t d : {int64_t{48}, int64_t{130}, int64_t{1536}})
      for (DType yt : {DType::f32, DType::bf16}) {
        const auto xs = random(rows * d, 31 + d), ys = random(rows * d, 32 + d), gs = random(d, 33, -2.f, 2.f);
        Tensor gx = gpu(xs, {rows, d}, DType::f32), gy = gpu(ys, {rows, d}, yt), gg = gpu(gs, {d}, DType::f32);
        Tensor cx = cpu(xs, {rows, d}), cy = cpu(ys, {rows, d}, yt), cg = cpu(gs, {d});
        gpu_->add_gated(gx, gy, gg);
        cpu_.add_gated(cx, cy, cg);
        EXPECT_LE(relative_l2(fetch(*gpu_, gx), fetch(cpu_, cx)), kF32Elementwise)
            << label("add_gated rows d", {rows, d}, yt, DType::f32);
        gpu_->add(gx, gy);
        cpu_.add(cx, cy);
        EXPECT_LE(relative_l2(fetch(*gpu_, gx), fetch(cpu_, cx)), kF32Elementwise)
            << label("add rows d", {rows, d}, yt, DType::f32);
      }
  Tensor x = gpu_->allocate({2, 8}, DType::f32), y = gpu_->allocate({2, 8}, DType::bf16);
  Tensor gate = gpu_->allocate({16}, DType::f32), xb = gpu_->allocate({2, 8}, DType::bf16);
  EXPECT_THROW(gpu_->add_gated(x, y, gate), std::invalid_argument);
  EXPECT_THROW(gpu_->add(xb, y), std::invalid_argument);
}

TEST_F(CudaOps, Silu) {
  const int64_t n = 1001;
  const auto xs = random(n, 41, -8.f, 8.f);
  for (DType in : {DType::f32, DType::bf16})
    for (DType out : {DType::f32, DType::bf16}) {
      Tensor gx = gpu(xs, {n}, in), go = gpu_->allocate({n}, out);
      Tensor cx = cpu(xs, {n}, in), co = cpu_.allocate({n}, DType::f32);
      gpu_->silu(go, gx);
      cpu_.silu(co, cx);
      EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), out == DType::bf16 ? kBf16Out : kF32Elementwise)
          << label("silu n", {n}, in, out);
    }
  Tensor x = gpu(xs, {n}, DType::f32), c = cpu(xs, {n});  // in place, as the time embedding uses it
  gpu_->silu(x, x);
  cpu_.silu(c, c);
  EXPECT_LE(relative_l2(fetch(*gpu_, x), fetch(cpu_, c)), kF32Elementwise);
}

// Random weights are made on the GPU: the same Philox values the host makes (double math on both sides; the GPU's
// log/cos may differ in the last bit of a double, which can flip the float rounding of a rare element).
TEST_F(CudaOps, FillNormalMakesTheHostValues) {
  const int64_t n = 100003;
  std::vector<float> host(n);
  for (int64_t i = 0; i < n; ++i) host[i] = 0.5f + 2.f * philox_normal(3, 77, static_cast<uint64_t>(i));
  for (DType dtype : {DType::f32, DType::bf16}) {
    Tensor g = gpu_->allocate({n}, dtype);
    gpu_->fill_normal(g, 3, 77, 0.5f, 2.f);
    const std::vector<float> got = fetch(*gpu_, g), want = rounded(host, dtype);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) differ += got[i] != want[i];
    EXPECT_LE(differ, n / 10000) << dtype_name(dtype);
    EXPECT_LE(relative_l2(got, want), 1e-6) << dtype_name(dtype);
  }
  Tensor c = cpu_.allocate({n}, DType::f32);  // the CPU backend's op is the host loop itself
  cpu_.fill_normal(c, 3, 77, 0.5f, 2.f);
  EXPECT_EQ(fetch(cpu_, c), host);
}

TEST_F(CudaOps, Lincomb) {
  const int64_t n = 1001;
  for (int count = 0; count <= 6; ++count)
    for (bool alias : {false, true}) {
      if (alias && count == 0) continue;
      std::vector<Tensor> g, c;
      std::vector<float> coeffs;
      for (int j = 0; j < count; ++j) {
        const auto v = random(n, 50 + j);
        g.push_back(gpu(v, {n}, DType::f32));
        c.push_back(cpu(v, {n}));
        coeffs.push_back(0.3f * (j + 1) - 1.f);
      }
      std::vector<const Tensor*> gp, cp;
      for (int j = 0; j < count; ++j) {
        gp.push_back(&g[j]);
        cp.push_back(&c[j]);
      }
      Tensor go = alias ? g[0] : gpu_->allocate({n}, DType::f32);
      Tensor co = alias ? c[0] : cpu_.allocate({n}, DType::f32);
      gpu_->lincomb(go, coeffs, gp);
      cpu_.lincomb(co, coeffs, cp);
      EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), kF32Elementwise)
          << "lincomb of " << count << (alias ? " in place" : "");
    }
  Tensor x = gpu_->allocate({n}, DType::f32);
  std::vector<const Tensor*> seven(7, &x);
  std::vector<float> coeffs(7, 1.f);
  EXPECT_THROW(gpu_->lincomb(x, coeffs, seven), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------ attention

TEST_F(CudaOps, Attention) {
  const int64_t lq = 37, lk = 513, heads = 3;
  for (int64_t d : {32, 64, 128})
    for (int64_t kv_valid : {int64_t{500}, lk}) {
      // q, k in [-2, 2]: scores scale·q·k with σ ≈ 1.3, a softmax that is neither flat nor one-hot.
      const auto qs = random(lq * heads * d, 61 + d, -2.f, 2.f), ks = random(lk * heads * d, 62 + d, -2.f, 2.f);
      const auto vs = random(lk * heads * d, 63 + d);
      const float scale = 1.f / std::sqrt(static_cast<float>(d));
      Tensor gq = gpu(qs, {lq, heads, d}, DType::bf16), gk = gpu(ks, {lk, heads, d}, DType::bf16);
      Tensor gv = gpu(vs, {lk, heads, d}, DType::bf16), go = gpu_->allocate({lq, heads, d}, DType::bf16);
      Tensor glse = gpu_->allocate({heads, lq}, DType::f32);
      Tensor cq = cpu(qs, {lq, heads, d}, DType::bf16), ck = cpu(ks, {lk, heads, d}, DType::bf16);
      Tensor cv = cpu(vs, {lk, heads, d}, DType::bf16), co = cpu_.allocate({lq, heads, d}, DType::f32);
      Tensor clse = cpu_.allocate({heads, lq}, DType::f32);
      gpu_->attention(go, &glse, gq, gk, gv, kv_valid, scale);
      cpu_.attention(co, &clse, cq, ck, cv, kv_valid, scale);
      EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), kAttentionOut) << "attention d " << d << " kv " << kv_valid;
      EXPECT_LE(relative_l2(fetch(*gpu_, glse), fetch(cpu_, clse)), kAttentionLse) << "lse d " << d << " kv " << kv_valid;
      // Without lse the output is the same.
      Tensor go2 = gpu_->allocate({lq, heads, d}, DType::bf16);
      gpu_->attention(go2, nullptr, gq, gk, gv, kv_valid, scale);
      EXPECT_LE(relative_l2(fetch(*gpu_, go2), fetch(cpu_, co)), kAttentionOut) << "attention without lse, d " << d;
    }
  // f32 is the VAE's path (AttentionF32 below): mixing it with bf16 is refused.
  Tensor f = gpu_->allocate({4, 1, 32}, DType::f32), b = gpu_->allocate({4, 1, 32}, DType::bf16);
  EXPECT_THROW(gpu_->attention(b, nullptr, f, f, f, 4, 1.f), std::invalid_argument);
  EXPECT_THROW(gpu_->attention(f, nullptr, b, b, b, 4, 1.f), std::invalid_argument);
}

TEST_F(CudaOps, AttentionMergeOfTwoKeyHalvesIsTheWholeAttention) {
  // Ring attention in miniature: attention over keys [0, 300) and [300, 513) merged by log-sum-exp equals the
  // attention over all keys; a part with no valid key (lse = −∞) changes nothing.
  const int64_t lq = 37, lk = 513, split = 300, heads = 3, d = 64;
  const auto qs = random(lq * heads * d, 71, -2.f, 2.f), ks = random(lk * heads * d, 72, -2.f, 2.f);
  const auto vs = random(lk * heads * d, 73);
  const float scale = 0.125f;
  Tensor q = gpu(qs, {lq, heads, d}, DType::bf16), k = gpu(ks, {lk, heads, d}, DType::bf16);
  Tensor v = gpu(vs, {lk, heads, d}, DType::bf16);
  Tensor whole = gpu_->allocate({lq, heads, d}, DType::bf16), whole_lse = gpu_->allocate({heads, lq}, DType::f32);
  gpu_->attention(whole, &whole_lse, q, k, v, lk, scale);
  Tensor part = gpu_->allocate({lq, heads, d}, DType::bf16), lse = gpu_->allocate({heads, lq}, DType::f32);
  Tensor part_lse = gpu_->allocate({heads, lq}, DType::f32), acc = gpu_->allocate({lq, heads, d}, DType::f32);
  gpu_->attention(part, &lse, q, k.slice(0, split), v.slice(0, split), split, scale);
  gpu_->copy(acc, part);
  gpu_->attention(part, &part_lse, q, k.slice(split, lk), v.slice(split, lk), lk - split, scale);
  gpu_->attention_merge(acc, lse, part, part_lse);
  gpu_->attention(part, &part_lse, q, k.slice(0, split), v.slice(0, split), 0, scale);  // no valid key
  gpu_->attention_merge(acc, lse, part, part_lse);
  EXPECT_LE(relative_l2(fetch(*gpu_, acc), fetch(*gpu_, whole)), kAttentionOut);
  EXPECT_LE(relative_l2(fetch(*gpu_, lse), fetch(*gpu_, whole_lse)), kAttentionLse);
  EXPECT_EQ(fetch(*gpu_, part_lse)[0], -INFINITY);
}

// ------------------------------------------------------------------------------------------------ layout

TEST_F(CudaOps, PatchifyUnpatchify) {
  // Pure data movement: exact, bf16 tokens equal to the rounded reference.
  for (const Shape& shape : {Shape{16, 3, 6, 10}, Shape{2, 1, 5, 7}}) {
    const int64_t c = shape[0], f = shape[1], h = shape[2], w = shape[3], tokens = f * (h / 2) * (w / 2);
    const auto lat = random(c * f * h * w, 71);
    Tensor glat = gpu(lat, shape, DType::f32), clat = cpu(lat, shape);
    Tensor ctok = cpu_.allocate({tokens, 4 * c}, DType::f32);
    cpu_.patchify(ctok, clat);
    const auto want = fetch(cpu_, ctok);
    for (DType t : {DType::f32, DType::bf16}) {
      Tensor gtok = gpu_->allocate({tokens, 4 * c}, t);
      gpu_->patchify(gtok, glat);
      EXPECT_EQ(fetch(*gpu_, gtok), rounded(want, t)) << "patchify " << shape_string(shape);
    }
    // Unpatchify into a latent with prior contents: an odd last row/column must stay as it was.
    const auto toks = random(tokens * 4 * c, 72), prior = random(c * f * h * w, 73);
    for (DType t : {DType::f32, DType::bf16}) {
      Tensor gtok = gpu(toks, {tokens, 4 * c}, t), ctok2 = cpu(toks, {tokens, 4 * c}, t);
      Tensor gout = gpu(prior, shape, DType::f32), cout = cpu(prior, shape);
      gpu_->unpatchify(gout, gtok);
      cpu_.unpatchify(cout, ctok2);
      EXPECT_EQ(fetch(*gpu_, gout), fetch(cpu_, cout)) << "unpatchify " << shape_string(shape);
    }
  }
  Tensor lat = gpu_->allocate({16, 3, 6, 10}, DType::f32), wrong = gpu_->allocate({44, 64}, DType::f32);
  EXPECT_THROW(gpu_->patchify(wrong, lat), std::invalid_argument);
  EXPECT_THROW(gpu_->unpatchify(lat, wrong), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------ video (VAE)

// All f32: the CPU and GPU differ only in summation order (≤ kF32Reduction) or not at all (data movement).

TEST_F(CudaOps, AttentionF32) {
  // The VAE's mid-block attention: one head of width C (16 for the tiny VAE, 384 for Wan2.1), any d ≤ 512.
  struct Case {
    int64_t lq, lk, kv_valid, heads, d;
  };
  // One head goes through fp32 GEMMs (any d), several heads through the warp kernel (d ≤ 512).
  for (const Case& c : {Case{48, 48, 48, 1, 16}, Case{37, 130, 100, 2, 96}, Case{70, 70, 70, 1, 384},
                        Case{5, 33, 33, 1, 500}, Case{9, 20, 0, 1, 40}, Case{300, 260, 257, 1, 384},
                        Case{3, 5, 5, 1, 700}, Case{20, 40, 40, 3, 500}}) {
    const auto qs = random(c.lq * c.heads * c.d, 81 + c.d, -2.f, 2.f);
    const auto ks = random(c.lk * c.heads * c.d, 82 + c.d, -2.f, 2.f), vs = random(c.lk * c.heads * c.d, 83 + c.d);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
    Tensor gq = gpu(qs, {c.lq, c.heads, c.d}, DType::f32), gk = gpu(ks, {c.lk, c.heads, c.d}, DType::f32);
    Tensor gv = gpu(vs, {c.lk, c.heads, c.d}, DType::f32), go = gpu_->allocate({c.lq, c.heads, c.d}, DType::f32);
    Tensor glse = gpu_->allocate({c.heads, c.lq}, DType::f32);
    Tensor cq = cpu(qs, {c.lq, c.heads, c.d}), ck = cpu(ks, {c.lk, c.heads, c.d}), cv = cpu(vs, {c.lk, c.heads, c.d});
    Tensor co = cpu_.allocate({c.lq, c.heads, c.d}, DType::f32), clse = cpu_.allocate({c.heads, c.lq}, DType::f32);
    gpu_->attention(go, &glse, gq, gk, gv, c.kv_valid, scale);
    cpu_.attention(co, &clse, cq, ck, cv, c.kv_valid, scale);
    const auto label_text = "attention f32 lq " + std::to_string(c.lq) + " d " + std::to_string(c.d) + " kv " +
                            std::to_string(c.kv_valid);
    // One head runs on TF32 tensor cores (10-bit mantissas, ~5e-4 per rounded operand): a TF32 bound there.
    const double bound = c.heads == 1 ? kTf32Gemm : kF32Reduction;
    EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), bound) << label_text;
    if (c.kv_valid > 0)
      EXPECT_LE(relative_l2(fetch(*gpu_, glse), fetch(cpu_, clse)), bound) << label_text;
    else
      EXPECT_EQ(fetch(*gpu_, glse)[0], -INFINITY) << label_text;
  }
  Tensor wide = gpu_->allocate({4, 2, 513}, DType::f32);
  EXPECT_THROW(gpu_->attention(wide, nullptr, wide, wide, wide, 4, 1.f), std::invalid_argument);
}

TEST_F(CudaOps, Conv3d) {
  // The decoder's kernels: 3×3×3 (pad 1; time frames given by the caller), time_conv 3×1×1 (pad 0), the
  // upsampler's 2-D 3×3 as kt = 1, a row band's conv (pad_h 0: halos given), odd sizes, and every output tile
  // width of the implicit GEMM (co ≤ 32, 64, 96, 128 and their multiples, co = 3 of conv_out); with and without
  // bias. The GPU multiplies bf16 copies of input and weight with fp32 accumulation: against the CPU on the same
  // bf16-rounded values only the summation order differs (kGemmBf16InF32Out); against the unrounded f32 input
  // the two roundings add ~2e-3 (bound 1e-2).
  struct Case {
    int64_t ti, hi, wi, ci, co, kt, kh, kw, pad_h, pad_w;
  };
  for (const Case& c : {Case{3, 6, 8, 16, 16, 3, 3, 3, 1, 1}, Case{4, 5, 7, 37, 20, 3, 3, 3, 1, 1},
                        Case{3, 4, 6, 16, 32, 3, 1, 1, 0, 0}, Case{2, 9, 5, 8, 4, 1, 3, 3, 1, 1},
                        Case{5, 1, 1, 3, 3, 3, 3, 3, 1, 1}, Case{3, 12, 16, 4, 3, 3, 3, 3, 1, 1},
                        Case{4, 10, 13, 96, 96, 3, 3, 3, 1, 1}, Case{3, 7, 9, 64, 192, 3, 3, 3, 0, 1},
                        Case{3, 6, 5, 32, 384, 3, 1, 1, 0, 0}, Case{1, 17, 23, 96, 64, 1, 3, 3, 1, 1},
                        Case{3, 8, 11, 96, 3, 3, 3, 3, 1, 1}, Case{4, 6, 7, 48, 136, 3, 3, 3, 1, 1}}) {
    const int64_t to = c.ti - c.kt + 1, ho = c.hi + 2 * c.pad_h - c.kh + 1, wo = c.wi + 2 * c.pad_w - c.kw + 1;
    const Shape in_shape = {c.ti, c.hi, c.wi, c.ci}, w_shape = {c.co, c.kt, c.kh, c.kw, c.ci}, out_shape = {to, ho, wo, c.co};
    const float bound = 1.f / std::sqrt(static_cast<float>(c.kt * c.kh * c.kw * c.ci));
    const auto xs = random(shape_numel(in_shape), 91 + c.ci), ws = random(shape_numel(w_shape), 92 + c.co, -bound, bound);
    const auto bs = random(c.co, 93);
    Tensor gx = gpu(xs, in_shape, DType::f32), gw = gpu(ws, w_shape, DType::f32), gb = gpu(bs, {c.co}, DType::f32);
    Tensor cx = cpu(xs, in_shape), cw = cpu(ws, w_shape), cb = cpu(bs, {c.co});
    Tensor cx16 = cpu(rounded(xs, DType::bf16), in_shape), cw16 = cpu(rounded(ws, DType::bf16), w_shape);
    const int ph = static_cast<int>(c.pad_h), pw = static_cast<int>(c.pad_w);
    for (bool with_bias : {true, false}) {
      Tensor go = gpu_->allocate(out_shape, DType::f32), co = cpu_.allocate(out_shape, DType::f32);
      Tensor co16 = cpu_.allocate(out_shape, DType::f32);
      gpu_->conv3d(go, gx, gw, with_bias ? &gb : nullptr, ph, pw);
      cpu_.conv3d(co, cx, cw, with_bias ? &cb : nullptr, ph, pw);
      cpu_.conv3d(co16, cx16, cw16, with_bias ? &cb : nullptr, ph, pw);
      const auto got = fetch(*gpu_, go);
      const std::string what = "conv3d in " + shape_string(in_shape) + " weight " + shape_string(w_shape) + " pad " +
                               std::to_string(ph) + "," + std::to_string(pw) + " bias " + std::to_string(with_bias);
      EXPECT_LE(relative_l2(got, fetch(cpu_, co16)), kGemmBf16InF32Out) << what << " vs bf16-rounded operands";
      EXPECT_LE(relative_l2(got, fetch(cpu_, co)), 1e-2) << what << " vs f32 operands";
    }
  }
  Tensor x = gpu_->allocate({3, 4, 4, 8}, DType::f32), w = gpu_->allocate({2, 3, 3, 3, 7}, DType::f32);
  Tensor out = gpu_->allocate({1, 4, 4, 2}, DType::f32);
  EXPECT_THROW(gpu_->conv3d(out, x, w, nullptr, 1, 1), std::invalid_argument);  // Ci 7 vs 8
}

TEST_F(CudaOps, CausalConv3dBuildsItsOperandFromHistoryAndNormalisedFrames) {
  // The decoder's fused op: [history; x] through SiLU(RMS_norm) (or as is) into the implicit GEMM. Reference: the
  // CPU on the same values — the normalised input rounded to bf16 as the GPU stores it, bf16-rounded weights — so
  // only summation orders differ (and a rare 1-ulp difference of a normalised value: bound 1e-4); and against the
  // unrounded f32 computation (the CPU backend's default composition) within the bf16 bound of Conv3d.
  struct Case {
    int64_t history, frames, hi, wi, ci, co, kt, kw, pad_h;
    bool norm;
  };
  for (const Case& c : {Case{2, 4, 7, 9, 96, 96, 3, 3, 1, true}, Case{2, 1, 5, 6, 16, 64, 3, 3, 1, true},
                        Case{0, 3, 6, 5, 32, 40, 3, 3, 0, true}, Case{2, 2, 4, 7, 48, 96, 3, 1, 0, false},
                        Case{2, 3, 5, 4, 37, 3, 3, 3, 1, true}, Case{0, 2, 6, 6, 64, 128, 1, 3, 1, false}}) {
    const int64_t kh = c.kw, pad_w = c.kw / 2, ti = c.history + c.frames;
    const int64_t to = ti - c.kt + 1, ho = c.hi + 2 * c.pad_h - kh + 1, wo = c.wi + 2 * pad_w - c.kw + 1;
    const Shape h_shape = {c.history, c.hi, c.wi, c.ci}, x_shape = {c.frames, c.hi, c.wi, c.ci};
    const Shape w_shape = {c.co, c.kt, kh, c.kw, c.ci}, out_shape = {to, ho, wo, c.co};
    const float bound = 1.f / std::sqrt(static_cast<float>(c.kt * kh * c.kw * c.ci));
    const auto hs = random(shape_numel(h_shape), 201 + c.ci, -2.f, 2.f), xs = random(shape_numel(x_shape), 202, -2.f, 2.f);
    const auto ws = random(shape_numel(w_shape), 203 + c.co, -bound, bound), bs = random(c.co, 204);
    const auto gs = random(c.ci, 205, 0.5f, 1.5f);
    Tensor gh = c.history ? gpu(hs, h_shape, DType::f32) : Tensor();
    Tensor gx = gpu(xs, x_shape, DType::f32), gw = gpu(ws, w_shape, DType::f32);
    Tensor gb = gpu(bs, {c.co}, DType::f32), gg = gpu(gs, {c.ci}, DType::f32);
    // A residual on the normalised cases (a residual block's conv2 with its shortcut).
    const auto rs = random(shape_numel(out_shape), 206, -1.f, 1.f);
    Tensor gr = gpu(rs, out_shape, DType::f32), go = gpu_->allocate(out_shape, DType::f32);
    gpu_->causal_conv3d(go, c.history ? &gh : nullptr, gx, c.norm ? &gg : nullptr, gw, &gb, static_cast<int>(c.pad_h),
                        static_cast<int>(pad_w), c.norm ? &gr : nullptr);
    const auto got = fetch(*gpu_, go);
    // The CPU's whole input, normalised as the op does, then rounded to bf16 on the host.
    std::vector<float> joined(hs);
    joined.insert(joined.end(), xs.begin(), xs.end());
    const Shape in_shape = {ti, c.hi, c.wi, c.ci};
    Tensor cin = cpu(joined, in_shape), cg = cpu(gs, {c.ci}), cb = cpu(bs, {c.co});
    if (c.norm) cpu_.vae_rms_norm(cin, cin, cg, /*then_silu=*/true);
    Tensor cin16 = cpu(rounded(fetch(cpu_, cin), DType::bf16), in_shape), cw16 = cpu(rounded(ws, DType::bf16), w_shape);
    Tensor co16 = cpu_.allocate(out_shape, DType::f32);
    cpu_.conv3d(co16, cin16, cw16, &cb, static_cast<int>(c.pad_h), static_cast<int>(pad_w));
    Tensor cr = cpu(rs, out_shape);
    if (c.norm) cpu_.add(co16, cr);
    Tensor ch = c.history ? cpu(hs, h_shape) : Tensor();
    Tensor cx = cpu(xs, x_shape), cw = cpu(ws, w_shape), co = cpu_.allocate(out_shape, DType::f32);
    cpu_.causal_conv3d(co, c.history ? &ch : nullptr, cx, c.norm ? &cg : nullptr, cw, &cb, static_cast<int>(c.pad_h),
                       static_cast<int>(pad_w), c.norm ? &cr : nullptr);
    const std::string what = "causal_conv3d history " + std::to_string(c.history) + " x " + shape_string(x_shape) +
                             " weight " + shape_string(w_shape) + " norm " + std::to_string(c.norm);
    EXPECT_LE(relative_l2(got, fetch(cpu_, co16)), 1e-4) << what << " vs the bf16-rounded operands";
    EXPECT_LE(relative_l2(got, fetch(cpu_, co)), 1e-2) << what << " vs f32";
  }
  Tensor x = gpu_->allocate({2, 4, 4, 8}, DType::f32), h = gpu_->allocate({2, 4, 5, 8}, DType::f32);
  Tensor w = gpu_->allocate({2, 3, 3, 3, 8}, DType::f32), out = gpu_->allocate({2, 4, 4, 2}, DType::f32);
  EXPECT_THROW(gpu_->causal_conv3d(out, &h, x, nullptr, w, nullptr, 1, 1), std::invalid_argument);  // W 5 vs 4
}

// Split K (conv3d_igemm.cu): a problem with fewer tiles than the GPU runs at once sums its tap rows in parts. The
// same operands through the unsplit kernel (no workspace) differ only in the fp32 summation order: ~√K·2⁻²⁴ for
// K = 27·384 terms is ~6e-6 (measured on an H100: 2.5e-6 and 2.9e-6; bound 1e-5).
TEST_F(CudaOps, Conv3dSplitOverTapRowsEqualsTheUnsplitSum) {
  // Input channels enough for parts of ≥ 32 K steps of 32 channels (conv3d_igemm.cu's minimum).
  for (const auto& [kt, kh, ci, co] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t>{3, 3, 384, 96}, {3, 1, 1024, 384}, {1, 3, 1024, 64}}) {
    const int64_t ti = 4, hi = 12, wi = 20, kw = kh, pad = kh / 2;
    const int64_t hp = hi + 2 * pad, wp = wi + 2 * pad, to = ti - kt + 1;
    ASSERT_GT(cuda::conv3d_igemm_workspace_floats(ti, hp, wp, cuda::conv_padded_in_channels(ci), co, kt, kh, kw), 0)
        << "the shape should split";
    const Shape in_shape = {ti, hi, wi, ci}, w_shape = {co, kt, kh, kw, ci}, out_shape = {to, hi, wi, co};
    const float bound = 1.f / std::sqrt(static_cast<float>(kt * kh * kw * ci));
    Tensor gx = gpu(random(shape_numel(in_shape), 401), in_shape, DType::f32);
    Tensor gw = gpu(random(shape_numel(w_shape), 402, -bound, bound), w_shape, DType::f32);
    Tensor gb = gpu(random(co, 403), {co}, DType::f32), gr = gpu(random(shape_numel(out_shape), 404), out_shape, DType::f32);
    Tensor split = gpu_->allocate(out_shape, DType::f32), whole = gpu_->allocate(out_shape, DType::f32);
    gpu_->causal_conv3d(split, nullptr, gx, nullptr, gw, &gb, static_cast<int>(pad), static_cast<int>(pad), &gr);
    const int64_t cp = cuda::conv_padded_in_channels(ci), cop = cuda::conv_padded_out_channels(co);
    Tensor padded = gpu_->allocate({ti, hp, wp, cp}, DType::bf16), packed = gpu_->allocate({cop, kt * kh * kw, cp}, DType::bf16);
    const auto stream = static_cast<cudaStream_t>(gpu_->stream_handle());
    cuda::conv_pack_input(padded.data(), nullptr, 0, gx.ptr<float>(), ti, nullptr, nullptr, hi, wi, ci, cp, pad, pad, stream);
    cuda::conv_pack_weight(packed.data(), gw.ptr<float>(), co, kt * kh * kw, ci, cop, cp, stream);
    cuda::conv3d_igemm(whole.ptr<float>(), padded.data(), packed.data(), gb.ptr<float>(), gr.ptr<float>(), ti, hp, wp,
                       cp, co, cop, kt, kh, kw, /*workspace=*/nullptr, stream);
    EXPECT_LE(relative_l2(fetch(*gpu_, split), fetch(*gpu_, whole)), 1e-5)
        << "split vs unsplit " << kt << "x" << kh << "x" << kw << " co " << co;
  }
}

// A row band's convolution (issue 5): the neighbours' edge rows given as halo_rows in place of the H padding
// equal the same op on the band stacked between its halo rows with no H padding (the same bf16 operand, so the
// same bits), and the CPU's composition within the bf16 bound.
TEST_F(CudaOps, CausalConv3dTakesHaloRowsInPlaceOfTheHPadding) {
  struct Case {
    int64_t history, frames, hi, wi, ci, co, kt;
    bool norm;
  };
  for (const Case& c : {Case{2, 4, 3, 9, 96, 96, 3, true}, Case{2, 1, 1, 6, 16, 64, 3, true},
                        Case{0, 3, 4, 5, 32, 40, 1, false}, Case{2, 2, 5, 7, 37, 3, 3, true}}) {
    const int64_t ti = c.history + c.frames, row = c.wi * c.ci, to = ti - c.kt + 1;
    const Shape h_shape = {c.history, c.hi, c.wi, c.ci}, x_shape = {c.frames, c.hi, c.wi, c.ci};
    const Shape w_shape = {c.co, c.kt, 3, 3, c.ci}, out_shape = {to, c.hi, c.wi, c.co};
    const float bound = 1.f / std::sqrt(static_cast<float>(c.kt * 9 * c.ci));
    const auto hs = random(shape_numel(h_shape), 301 + c.ci, -2.f, 2.f), xs = random(shape_numel(x_shape), 302, -2.f, 2.f);
    const auto halo = random(2 * ti * row, 303, -2.f, 2.f);
    const auto ws = random(shape_numel(w_shape), 304 + c.co, -bound, bound), bs = random(c.co, 305);
    const auto gs = random(c.ci, 306, 0.5f, 1.5f), rs = random(shape_numel(out_shape), 307, -1.f, 1.f);
    Tensor gh = c.history ? gpu(hs, h_shape, DType::f32) : Tensor();
    Tensor gx = gpu(xs, x_shape, DType::f32), gw = gpu(ws, w_shape, DType::f32), gb = gpu(bs, {c.co}, DType::f32);
    Tensor gg = gpu(gs, {c.ci}, DType::f32), gr = gpu(rs, out_shape, DType::f32);
    Tensor ghalo = gpu(halo, {2, ti, c.wi, c.ci}, DType::f32), go = gpu_->allocate(out_shape, DType::f32);
    gpu_->causal_conv3d(go, c.history ? &gh : nullptr, gx, c.norm ? &gg : nullptr, gw, &gb, 1, 1,
                        c.norm ? &gr : nullptr, &ghalo);
    // The same frames stacked with their halo rows: [ti, hi + 2, wi, ci], convolved with pad_h 0.
    std::vector<float> stacked;
    for (int64_t t = 0; t < ti; ++t) {
      const auto frame = t < c.history ? hs.begin() + t * c.hi * row : xs.begin() + (t - c.history) * c.hi * row;
      stacked.insert(stacked.end(), halo.begin() + t * row, halo.begin() + (t + 1) * row);
      stacked.insert(stacked.end(), frame, frame + c.hi * row);
      stacked.insert(stacked.end(), halo.begin() + (ti + t) * row, halo.begin() + (ti + t + 1) * row);
    }
    const Shape s_shape = {ti, c.hi + 2, c.wi, c.ci};
    Tensor gs_all = gpu(stacked, s_shape, DType::f32), gref = gpu_->allocate(out_shape, DType::f32);
    gpu_->causal_conv3d(gref, nullptr, gs_all, c.norm ? &gg : nullptr, gw, &gb, 0, 1, c.norm ? &gr : nullptr);
    const std::string what = "halo causal_conv3d history " + std::to_string(c.history) + " x " + shape_string(x_shape);
    EXPECT_EQ(fetch(*gpu_, go), fetch(*gpu_, gref)) << what << " vs the stacked band";
    Tensor ch = c.history ? cpu(hs, h_shape) : Tensor();
    Tensor cx = cpu(xs, x_shape), cw = cpu(ws, w_shape), cb = cpu(bs, {c.co}), cg = cpu(gs, {c.ci});
    Tensor cr = cpu(rs, out_shape), chalo = cpu(halo, {2, ti, c.wi, c.ci}), co = cpu_.allocate(out_shape, DType::f32);
    cpu_.causal_conv3d(co, c.history ? &ch : nullptr, cx, c.norm ? &cg : nullptr, cw, &cb, 1, 1,
                       c.norm ? &cr : nullptr, &chalo);
    EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), 1e-2) << what << " vs the CPU in f32";
  }
  Tensor x = gpu_->allocate({3, 4, 4, 8}, DType::f32), w = gpu_->allocate({2, 3, 3, 3, 8}, DType::f32);
  Tensor halo = gpu_->allocate({2, 3, 4, 8}, DType::f32), out = gpu_->allocate({1, 2, 4, 2}, DType::f32);
  EXPECT_THROW(gpu_->causal_conv3d(out, nullptr, x, nullptr, w, nullptr, 0, 1, nullptr, &halo),
               std::invalid_argument);  // halo rows need pad_h 1
  Tensor short_halo = gpu_->allocate({2, 2, 4, 8}, DType::f32), out1 = gpu_->allocate({1, 4, 4, 2}, DType::f32);
  EXPECT_THROW(gpu_->causal_conv3d(out1, nullptr, x, nullptr, w, nullptr, 1, 1, nullptr, &short_halo),
               std::invalid_argument);  // 2 frames of halo rows for 3
}

TEST_F(CudaOps, VaeRmsNorm) {
  for (int64_t rows : kRows)
    for (int64_t d : {3, 4, 16, 96, 384, 517})
      for (bool silu : {false, true}) {
        const auto xs = random(rows * d, rows * 10 + d, -3.f, 2.f), gs = random(d, 5, 0.5f, 1.5f);
        Tensor gx = gpu(xs, {rows, d}, DType::f32), gg = gpu(gs, {d}, DType::f32), go = gpu_->allocate({rows, d}, DType::f32);
        Tensor cx = cpu(xs, {rows, d}), cg = cpu(gs, {d}), co = cpu_.allocate({rows, d}, DType::f32);
        gpu_->vae_rms_norm(go, gx, gg, silu);
        cpu_.vae_rms_norm(co, cx, cg, silu);
        const auto want = fetch(cpu_, co);
        EXPECT_LE(relative_l2(fetch(*gpu_, go), want), kF32Reduction) << label("vae_rms_norm rows d", {rows, d}) << silu;
        gpu_->vae_rms_norm(gx, gx, gg, silu);  // in place
        EXPECT_LE(relative_l2(fetch(*gpu_, gx), want), kF32Reduction) << label("vae_rms_norm in place", {rows, d});
      }
  // An all-zero row stays zero (the norm is floored at 1e-12, no division by zero).
  Tensor z = gpu(std::vector<float>(16, 0.f), {1, 16}, DType::f32), g = gpu(std::vector<float>(16, 1.f), {16}, DType::f32);
  gpu_->vae_rms_norm(z, z, g, true);
  EXPECT_EQ(fetch(*gpu_, z), std::vector<float>(16, 0.f));
}

TEST_F(CudaOps, VideoLayoutOps) {
  // Pure data movement (and one affine per element): exact or at f32 rounding.
  const Shape frames = {3, 5, 7, 6};
  const auto xs = random(shape_numel(frames), 101, -2.f, 2.f);
  Tensor gx = gpu(xs, frames, DType::f32), cx = cpu(xs, frames);

  Tensor gup = gpu_->allocate({3, 10, 14, 6}, DType::f32), cup = cpu_.allocate({3, 10, 14, 6}, DType::f32);
  gpu_->upsample_nearest2x(gup, gx);
  cpu_.upsample_nearest2x(cup, cx);
  EXPECT_EQ(fetch(*gpu_, gup), fetch(cpu_, cup)) << "upsample_nearest2x";

  Tensor gtf = gpu_->allocate({6, 5, 7, 3}, DType::f32), ctf = cpu_.allocate({6, 5, 7, 3}, DType::f32);
  gpu_->channels_to_frames(gtf, gx, 2);
  cpu_.channels_to_frames(ctf, cx, 2);
  EXPECT_EQ(fetch(*gpu_, gtf), fetch(cpu_, ctf)) << "channels_to_frames";

  Tensor gpl = gpu_->allocate({3, 6, 5, 7}, DType::f32), cpl = cpu_.allocate({3, 6, 5, 7}, DType::f32);
  gpu_->frames_to_planar(gpl, gx, -1.f, 1.f);
  cpu_.frames_to_planar(cpl, cx, -1.f, 1.f);
  EXPECT_EQ(fetch(*gpu_, gpl), fetch(cpu_, cpl)) << "frames_to_planar";

  const Shape latent = {16, 3, 6, 8};
  const auto ls = random(shape_numel(latent), 102, -3.f, 3.f), sc = random(16, 103, 1.f, 3.f), sh = random(16, 104);
  Tensor glat = gpu(ls, latent, DType::f32), gsc = gpu(sc, {16}, DType::f32), gsh = gpu(sh, {16}, DType::f32);
  Tensor clat = cpu(ls, latent), csc = cpu(sc, {16}), csh = cpu(sh, {16});
  Tensor gcl = gpu_->allocate({3, 6, 8, 16}, DType::f32), ccl = cpu_.allocate({3, 6, 8, 16}, DType::f32);
  gpu_->latent_to_channels_last(gcl, glat, gsc, gsh);
  cpu_.latent_to_channels_last(ccl, clat, csc, csh);
  EXPECT_LE(relative_l2(fetch(*gpu_, gcl), fetch(cpu_, ccl)), kF32Elementwise) << "latent_to_channels_last";

  EXPECT_THROW(gpu_->channels_to_frames(gtf, gx, 4), std::invalid_argument);  // 6 channels do not split in 4
  EXPECT_THROW(gpu_->upsample_nearest2x(gtf, gx), std::invalid_argument);
}

}  // namespace

// The row split of the VAE decode (model/parallel/row_bands.h): a band of rows with one halo row above and below,
// convolved with no H padding and W padding 1, gives the band's rows of the whole frame's pad-1 convolution (the
// 3×3×3 convs and the upsampler's 1×3×3). The band at the top/bottom has a zero halo row, as the CPU pads.
TEST_F(CudaOps, Conv3dOfARowBandWithHalosIsTheWholeFramesRows) {
  struct Case {
    int64_t ti, hi, wi, ci, co, kt, band_first, band_rows;
  };
  for (const Case& c : {Case{4, 9, 7, 8, 5, 3, 3, 4}, Case{3, 6, 8, 16, 16, 3, 0, 2}, Case{2, 12, 16, 4, 3, 1, 9, 3},
                        Case{3, 5, 6, 37, 20, 3, 4, 1}}) {
    const Shape in_shape = {c.ti, c.hi, c.wi, c.ci}, w_shape = {c.co, c.kt, 3, 3, c.ci};
    const float bound = 1.f / std::sqrt(static_cast<float>(c.kt * 9 * c.ci));
    const auto xs = random(shape_numel(in_shape), 111 + c.ci), ws = random(shape_numel(w_shape), 112, -bound, bound);
    const auto bs = random(c.co, 113);
    // The whole frame on the CPU, pad 1 in H and W.
    const int64_t to = c.ti - c.kt + 1;
    // The CPU on the bf16-rounded operands the GPU multiplies (see Conv3d): only the summation order differs.
    Tensor cx = cpu(rounded(xs, DType::bf16), in_shape), cw = cpu(rounded(ws, DType::bf16), w_shape);
    Tensor cb = cpu(bs, {c.co});
    Tensor whole = cpu_.allocate({to, c.hi, c.wi, c.co}, DType::f32);
    cpu_.conv3d(whole, cx, cw, &cb, 1, 1);
    // The band stacked between its halo rows (zeros past the image).
    const int64_t rows = c.band_rows + 2, pixel_row = c.wi * c.ci;
    std::vector<float> band(static_cast<size_t>(c.ti * rows * pixel_row), 0.f);
    for (int64_t t = 0; t < c.ti; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t y = c.band_first - 1 + r;
        if (y < 0 || y >= c.hi) continue;
        std::copy_n(xs.begin() + (t * c.hi + y) * pixel_row, pixel_row, band.begin() + (t * rows + r) * pixel_row);
      }
    Tensor gx = gpu(band, {c.ti, rows, c.wi, c.ci}, DType::f32), gw = gpu(ws, w_shape, DType::f32);
    Tensor gb = gpu(bs, {c.co}, DType::f32), go = gpu_->allocate({to, c.band_rows, c.wi, c.co}, DType::f32);
    gpu_->conv3d(go, gx, gw, &gb, /*pad_h=*/0, /*pad_w=*/1);
    const std::vector<float> all = fetch(cpu_, whole);
    std::vector<float> want;
    for (int64_t t = 0; t < to; ++t)
      want.insert(want.end(), all.begin() + (t * c.hi + c.band_first) * c.wi * c.co,
                  all.begin() + (t * c.hi + c.band_first + c.band_rows) * c.wi * c.co);
    EXPECT_LE(relative_l2(fetch(*gpu_, go), want), kGemmBf16InF32Out)
        << "band conv3d rows " << c.band_first << "+" << c.band_rows << " of " << c.hi << " kt " << c.kt;
  }
}

// ---- Text encoder ops (umT5, spec §5.1; model/cuda/text_ops.cu against model/cpu/cpu_text_ops.cc).

TEST_F(CudaOps, TextEmbedding) {
  const int64_t vocab = 97, d = 70;
  const auto table = random(vocab * d, 201);
  const std::vector<int32_t> ids = {0, 96, 5, 5, 42, 1, 2, 80, 33};
  const int64_t n = static_cast<int64_t>(ids.size());
  for (DType table_dtype : {DType::f32, DType::bf16})
    for (DType out_dtype : {DType::f32, DType::bf16}) {
      Tensor gt = gpu(table, {vocab, d}, table_dtype), go = gpu_->allocate({n, d}, out_dtype);
      Tensor ct = cpu(table, {vocab, d}, table_dtype), co = cpu_.allocate({n, d}, DType::f32);
      gpu_->embedding(go, gt, ids);
      cpu_.embedding(co, ct, ids);
      // A row copy: exact, or one rounding to bf16 when the table is f32 and the output bf16.
      const std::vector<float> want = rounded(fetch(cpu_, co), out_dtype);
      EXPECT_EQ(fetch(*gpu_, go), want) << label("embedding", {vocab, d}, table_dtype, out_dtype);
    }
  Tensor gt = gpu(table, {vocab, d}, DType::f32), go = gpu_->allocate({1, d}, DType::f32);
  EXPECT_THROW(gpu_->embedding(go, gt, std::vector<int32_t>{97}), std::invalid_argument);
}

TEST_F(CudaOps, TextRelativePositionBias) {
  for (const auto& [lq, lk] : {std::pair<int64_t, int64_t>{1, 1}, {37, 37}, {512, 512}, {5, 70}}) {
    const int64_t heads = 6, buckets = 32;
    const auto table = random(buckets * heads, 211);
    std::vector<int32_t> offsets(static_cast<size_t>(lq + lk - 1));
    for (size_t i = 0; i < offsets.size(); ++i) offsets[i] = static_cast<int32_t>((i * 7 + 3) % buckets);
    Tensor gt = gpu(table, {buckets, heads}, DType::f32), gb = gpu_->allocate({heads, lq, lk}, DType::f32);
    Tensor ct = cpu(table, {buckets, heads}), cb = cpu_.allocate({heads, lq, lk}, DType::f32);
    gpu_->relative_position_bias(gb, gt, offsets);
    cpu_.relative_position_bias(cb, ct, offsets);
    EXPECT_EQ(fetch(*gpu_, gb), fetch(cpu_, cb)) << "relative_position_bias " << lq << "x" << lk;  // a gather: exact
  }
}

TEST_F(CudaOps, TextAttentionBiased) {
  struct Case {
    int64_t lq, lk, kv_valid, heads, d;
  };
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& c : {Case{1, 1, 1, 1, 16}, Case{37, 37, 37, 4, 16}, Case{130, 130, 100, 3, 64},
                          Case{512, 512, 512, 2, 64}, Case{9, 20, 0, 1, 40}}) {
      const auto qs = random(c.lq * c.heads * c.d, 221 + c.d, -0.5f, 0.5f);
      const auto ks = random(c.lk * c.heads * c.d, 222 + c.d, -0.5f, 0.5f);
      const auto vs = random(c.lk * c.heads * c.d, 223 + c.d);
      const auto bs = random(c.heads * c.lq * c.lk, 224, -3.f, 3.f);
      Tensor gq = gpu(qs, {c.lq, c.heads, c.d}, dt), gk = gpu(ks, {c.lk, c.heads, c.d}, dt);
      Tensor gv = gpu(vs, {c.lk, c.heads, c.d}, dt), gb = gpu(bs, {c.heads, c.lq, c.lk}, DType::f32);
      Tensor go = gpu_->allocate({c.lq, c.heads, c.d}, dt);
      Tensor cq = cpu(qs, {c.lq, c.heads, c.d}, dt), ck = cpu(ks, {c.lk, c.heads, c.d}, dt);
      Tensor cv = cpu(vs, {c.lk, c.heads, c.d}, dt), cb = cpu(bs, {c.heads, c.lq, c.lk});
      Tensor co = cpu_.allocate({c.lq, c.heads, c.d}, DType::f32);
      gpu_->attention_biased(go, gq, gk, gv, gb, c.kv_valid, 1.f);  // umT5: no 1/√d
      cpu_.attention_biased(co, cq, ck, cv, cb, c.kv_valid, 1.f);
      const double bound = dt == DType::bf16 ? kBf16Out : kF32Reduction;
      EXPECT_LE(relative_l2(fetch(*gpu_, go), fetch(cpu_, co)), bound)
          << label("attention_biased lq lk kv heads d", {c.lq, c.lk, c.kv_valid, c.heads, c.d}, dt, dt);
    }
}

TEST_F(CudaOps, TextMultiply) {
  for (int64_t n : {1, 37, 100003})
    for (DType xt : {DType::f32, DType::bf16})
      for (DType yt : {DType::f32, DType::bf16}) {
        const auto xs = random(n, 231), ys = random(n, 232);
        Tensor gx = gpu(xs, {n}, xt), gy = gpu(ys, {n}, yt);
        Tensor cx = cpu(xs, {n}, xt), cy = cpu(ys, {n}, yt);
        gpu_->multiply(gx, gy);
        cpu_.multiply(cx, cy);
        const std::vector<float> want = rounded(fetch(cpu_, cx), xt);
        EXPECT_LE(relative_l2(fetch(*gpu_, gx), want), kF32Elementwise) << label("multiply", {n}, xt, yt);
      }
}

#include "model/text/text_encoder_source.h"  // appended section: the whole tiny encoder

TEST_F(CudaOps, TextTinyUmt5EncoderAgainstCpu) {
  // The whole tiny encoder (seeded weights, bf16 on the GPU, f32 on the CPU): bf16 tolerance of design.md.
  const text::TextEncoderSource source = text::resolve_text_encoder_source("tiny");
  text::Umt5Encoder on_gpu = text::make_text_encoder(*gpu_, source), on_cpu = text::make_text_encoder(cpu_, source);
  const text::TokenizedPrompt t = text::make_tokenizer(source).encode("A red fox trots through fresh snow at dawn");
  const std::span<const int32_t> ids = std::span<const int32_t>(t.ids).first(static_cast<size_t>(t.length));
  EXPECT_LE(relative_l2(on_gpu.encode(ids), on_cpu.encode(ids)), 2e-2);
}

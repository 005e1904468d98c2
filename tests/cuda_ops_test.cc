// CUDA ops of the DiT against the CPU ops (fixture and bounds: cuda_ops_fixture.h): memory, linear layers and the
// GEMM tuning file, norms, element-wise ops, attention, patchify.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "model/core/philox.h"
#include "model/cuda/gemm_tuning_cache.h"
#include "model/cuda/op_timing.h"
#include "tests/cuda_ops_fixture.h"

using namespace ditrun;
using namespace ditrun::cuda_ops_testing;
using ditrun::testing::relative_l2;

namespace {

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

// The residual step fused with the norm that reads it (DiT::finish_block): x and out bit for bit those of add_gated
// (or add) followed by layer_norm (affine or not) or layer_norm_modulate on the GPU, and near the CPU composition.
// Widths with 16-byte packs held in registers (1536), without packs (130), longer than the register cache
// (12,288); a y starting 2 bytes past a pack boundary (the two-kernel path).
TEST_F(CudaOps, AddLayerNorm) {
  enum class Norm { plain, affine, modulate };
  for (int64_t rows : {int64_t{1}, int64_t{7}, int64_t{129}})
    for (int64_t d : {int64_t{48}, int64_t{130}, int64_t{1536}, int64_t{12288}})
      for (DType yt : {DType::f32, DType::bf16})
        for (bool gated : {false, true})
          for (Norm norm : {Norm::plain, Norm::affine, Norm::modulate})
            for (bool shifted_y : {false, true}) {
              if (shifted_y && (yt != DType::bf16 || d != 1536)) continue;
              const auto xs = random(rows * d, rows * 7 + d, 1.f, 3.f), ys = random(rows * d + 1, d + 8, -2.f, 2.f);
              const auto gs = random(d, 9, -1.f, 1.f), ws = random(d, 10, 0.5f, 1.5f), bs = random(d, 11, -.5f, .5f);
              Tensor gg = gpu(gs, {d}, DType::f32), gw = gpu(ws, {d}, DType::f32), gb = gpu(bs, {d}, DType::f32);
              Tensor cg = cpu(gs, {d}), cw = cpu(ws, {d}), cb = cpu(bs, {d});
              const bool affine = norm == Norm::affine, modulate = norm == Norm::modulate;
              const std::string what = label("add_layer_norm rows d", {rows, d}, yt, DType::bf16) +
                                       (gated ? " gated" : "") + (affine ? " affine" : "") +
                                       (modulate ? " modulated" : "") + (shifted_y ? " y shifted" : "");
              Tensor gy_all = gpu(ys, {rows * d + 1}, yt);
              Tensor gy = gy_all.slice(shifted_y ? 1 : 0, rows * d + (shifted_y ? 1 : 0)).view({rows, d});
              Tensor fused_x = gpu(xs, {rows, d}, DType::f32), fused_out = gpu_->allocate({rows, d}, DType::bf16);
              gpu_->add_layer_norm(fused_x, gy, gated ? &gg : nullptr, fused_out, affine ? &gw : nullptr,
                                   affine ? &gb : nullptr, modulate ? &gb : nullptr, modulate ? &gw : nullptr,
                                   1e-6f);
              Tensor two_x = gpu(xs, {rows, d}, DType::f32), two_out = gpu_->allocate({rows, d}, DType::bf16);
              if (gated)
                gpu_->add_gated(two_x, gy, gg);
              else
                gpu_->add(two_x, gy);
              if (modulate)
                gpu_->layer_norm_modulate(two_out, two_x, gb, gw, 1e-6f);
              else
                gpu_->layer_norm(two_out, two_x, affine ? &gw : nullptr, affine ? &gb : nullptr, 1e-6f);
              const auto fx = fetch(*gpu_, fused_x), tx = fetch(*gpu_, two_x);
              const auto fo = fetch(*gpu_, fused_out), to = fetch(*gpu_, two_out);
              EXPECT_EQ(std::memcmp(fx.data(), tx.data(), fx.size() * sizeof(float)), 0) << what << ": x not bitwise";
              EXPECT_EQ(std::memcmp(fo.data(), to.data(), fo.size() * sizeof(float)), 0) << what << ": out not bitwise";

              const std::vector<float> y_used(ys.begin() + (shifted_y ? 1 : 0),
                                              ys.begin() + (shifted_y ? 1 : 0) + rows * d);
              Tensor cx = cpu(xs, {rows, d}), cy = cpu(y_used, {rows, d}, yt), co = cpu_.allocate({rows, d}, DType::f32);
              cpu_.add_layer_norm(cx, cy, gated ? &cg : nullptr, co, affine ? &cw : nullptr, affine ? &cb : nullptr,
                                  modulate ? &cb : nullptr, modulate ? &cw : nullptr, 1e-6f);
              EXPECT_LE(relative_l2(fx, fetch(cpu_, cx)), kF32Elementwise) << what;
              EXPECT_LE(relative_l2(fo, fetch(cpu_, co)), kBf16Out) << what;
            }
  Tensor x = gpu_->allocate({2, 8}, DType::f32), y = gpu_->allocate({2, 8}, DType::bf16);
  Tensor out = gpu_->allocate({2, 8}, DType::bf16), v8 = gpu_->allocate({8}, DType::f32);
  Tensor v16 = gpu_->allocate({16}, DType::f32), xb = gpu_->allocate({2, 8}, DType::bf16);
  EXPECT_THROW(gpu_->add_layer_norm(x, y, &v16, out, nullptr, nullptr, nullptr, nullptr, 1e-6f),
               std::invalid_argument);
  EXPECT_THROW(gpu_->add_layer_norm(x, y, nullptr, out, &v8, nullptr, &v8, &v8, 1e-6f), std::invalid_argument);
  EXPECT_THROW(gpu_->add_layer_norm(x, y, nullptr, out, nullptr, nullptr, &v8, nullptr, 1e-6f),
               std::invalid_argument);
  EXPECT_THROW(gpu_->add_layer_norm(xb, y, nullptr, out, nullptr, nullptr, nullptr, nullptr, 1e-6f),
               std::invalid_argument);
  EXPECT_THROW(gpu_->add_layer_norm(x, y, nullptr, x, nullptr, nullptr, nullptr, nullptr, 1e-6f),
               std::invalid_argument);
}

// Op timing (dit_forward_bench --op-times): nothing while off; when on, one entry per op and shape with its calls,
// FLOPs (2·M·N·K for a GEMM, 4·heads·queries·keys·d for attention) and a GPU time that grows with the work; ops
// queued inside a graph capture are left out; collect() empties the totals.
TEST_F(CudaOps, OpTimingSumsEachOpAndShape) {
  cuda::OpTiming& timing = gpu_->op_timing();
  const int64_t m = 2048, n = 1024, k = 1024;
  Tensor x = gpu(random(m * k, 1), {m, k}, DType::bf16), w = gpu(random(n * k, 2), {n, k}, DType::bf16);
  Tensor y = gpu_->allocate({m, n}, DType::bf16), big_y = gpu_->allocate({4 * m, n}, DType::bf16);
  Tensor big_x = gpu(random(4 * m * k, 3), {4 * m, k}, DType::bf16);
  Tensor q = gpu(random(256 * 2 * 128, 4), {256, 2, 128}, DType::bf16);
  Tensor o = gpu_->allocate({256, 2, 128}, DType::bf16);
  gpu_->linear(y, x, w, nullptr, Epilogue::none);  // off: not timed
  EXPECT_TRUE(timing.collect().empty());

  timing.set_enabled(true);
  for (int i = 0; i < 3; ++i) gpu_->linear(y, x, w, nullptr, Epilogue::none);
  for (int i = 0; i < 3; ++i) gpu_->linear(big_y, big_x, w, nullptr, Epilogue::none);
  gpu_->attention(o, nullptr, q, q, q, 200, 0.1f);
  Tensor normed = gpu_->allocate({m, n}, DType::bf16);
  gpu_->layer_norm(normed, y, nullptr, nullptr, 1e-6f);
  cudaStream_t stream = gpu_->stream();
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  gpu_->layer_norm(normed, y, nullptr, nullptr, 1e-6f);  // captured: not timed
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphDestroy(graph);
  timing.set_enabled(false);
  gpu_->layer_norm(normed, y, nullptr, nullptr, 1e-6f);  // off again

  const auto entries = timing.collect();
  ASSERT_EQ(entries.size(), 4u);
  auto find = [&](const std::string& op, const std::string& shape_prefix) -> const cuda::OpTiming::Entry* {
    for (const auto& e : entries)
      if (e.op == op && e.shape.rfind(shape_prefix, 0) == 0) return &e;
    return nullptr;
  };
  const auto* small = find("linear", "2048x1024x1024 bf16->bf16");
  const auto* large = find("linear", "8192x1024x1024 bf16->bf16");
  const auto* attention = find("attention", "2x256x200 d128 bf16");
  const auto* norm = find("layer_norm", "2048x1024 bf16->bf16");
  ASSERT_TRUE(small && large && attention && norm);
  EXPECT_EQ(small->calls, 3);
  EXPECT_EQ(large->calls, 3);
  EXPECT_EQ(attention->calls, 1);
  EXPECT_EQ(norm->calls, 1);
  EXPECT_DOUBLE_EQ(small->flop, 3 * 2.0 * m * n * k);
  EXPECT_DOUBLE_EQ(large->flop, 3 * 2.0 * 4 * m * n * k);
  EXPECT_DOUBLE_EQ(attention->flop, 4.0 * 2 * 256 * 200 * 128);
  EXPECT_EQ(norm->flop, 0);
  for (const auto& e : entries) EXPECT_GT(e.ms, 0) << e.op << " " << e.shape;
  EXPECT_GT(large->ms, 2 * small->ms);  // four times the work
  EXPECT_EQ(&entries.front(), large);   // the longest first
  EXPECT_TRUE(timing.collect().empty());
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

}  // namespace

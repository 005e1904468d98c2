// CUDA video ops of the Wan-VAE decoder (spec §4) against the CPU ops (fixture and bounds: cuda_ops_fixture.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "model/cuda/conv3d_igemm.h"
#include "tests/cuda_ops_fixture.h"

using namespace ditrun;
using namespace ditrun::cuda_ops_testing;
using ditrun::testing::relative_l2;

namespace {

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

}  // namespace

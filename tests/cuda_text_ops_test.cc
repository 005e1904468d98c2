// CUDA ops of the umT5 text encoder (spec §5.1; model/cuda/text_ops.cu) against the CPU ops
// (model/cpu/cpu_text_ops.cc), and the whole tiny encoder (fixture and bounds: cuda_ops_fixture.h).
#include <gtest/gtest.h>

#include <span>

#include "model/text/text_encoder_source.h"
#include "tests/cuda_ops_fixture.h"

using namespace ditrun;
using namespace ditrun::cuda_ops_testing;
using ditrun::testing::relative_l2;

namespace {

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

TEST_F(CudaOps, TextTinyUmt5EncoderAgainstCpu) {
  // The whole tiny encoder (seeded weights, bf16 on the GPU, f32 on the CPU): bf16 tolerance of design.md.
  const text::TextEncoderSource source = text::resolve_text_encoder_source("tiny");
  text::Umt5Encoder on_gpu = text::make_text_encoder(*gpu_, source), on_cpu = text::make_text_encoder(cpu_, source);
  const text::TokenizedPrompt t = text::make_tokenizer(source).encode("A red fox trots through fresh snow at dawn");
  const std::span<const int32_t> ids = std::span<const int32_t>(t.ids).first(static_cast<size_t>(t.length));
  EXPECT_LE(relative_l2(on_gpu.encode(ids), on_cpu.encode(ids)), 2e-2);
}

}  // namespace

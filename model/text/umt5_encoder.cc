#include "model/text/umt5_encoder.h"

#include <stdexcept>

#include "model/text/relative_position.h"

namespace ditrun::text {

Umt5Encoder::Umt5Encoder(Backend& backend, Umt5Config config, Umt5Weights weights)
    : backend_(backend), config_(std::move(config)), weights_(std::move(weights)) {}

std::vector<float> Umt5Encoder::encode(std::span<const int32_t> ids) {
  const Arena::Mark mark = backend_.arena().mark();
  Tensor out = backend_.scratch({static_cast<int64_t>(ids.size()), config_.d_model}, DType::f32);
  encode(out, ids);
  std::vector<float> host(static_cast<size_t>(out.numel()));
  backend_.download(out, host.data());
  backend_.arena().rewind(mark);
  return host;
}

void Umt5Encoder::encode(Tensor& out, std::span<const int32_t> ids) {
  Backend& be = backend_;
  const Umt5Config& c = config_;
  const int64_t len = static_cast<int64_t>(ids.size()), d = c.d_model, inner = c.inner(), heads = c.heads;
  if (len < 1) throw std::invalid_argument("umt5 encode: no tokens");
  expect_shape(out, {len, d}, "umt5 encoder output");
  const DType dt = be.compute_dtype();
  const Arena::Mark mark = be.arena().mark();

  // Residual stream in fp32 (the reference is bf16 throughout; fp32 here is the CPU reference's precision).
  Tensor x = be.scratch({len, d}, DType::f32);
  be.embedding(x, weights_.token_embedding, ids);
  Tensor h = be.scratch({len, d}, dt);
  Tensor q = be.scratch({len, inner}, dt), k = be.scratch({len, inner}, dt), v = be.scratch({len, inner}, dt);
  Tensor attn = be.scratch({len, inner}, dt);
  Tensor bias = be.scratch({heads, len, len}, DType::f32);
  Tensor y = be.scratch({len, d}, DType::f32);
  Tensor gate = be.scratch({len, c.d_ff}, dt), linear = be.scratch({len, c.d_ff}, dt);
  const std::vector<int32_t> buckets = bucket_of_offsets(len, len, c.buckets, c.max_distance);

  for (const Umt5LayerWeights& l : weights_.layers) {
    // x += O(Attn(RMS1(x))): scores q·kᵀ (no scaling) + this layer's position bias, all keys real (spec §5.1).
    be.rms_norm(h, x, l.norm1, c.eps);
    be.linear(q, h, l.q, nullptr, Epilogue::none);
    be.linear(k, h, l.k, nullptr, Epilogue::none);
    be.linear(v, h, l.v, nullptr, Epilogue::none);
    be.relative_position_bias(bias, l.position_bias, buckets);
    const Tensor q3 = q.view({len, heads, c.d_kv}), k3 = k.view({len, heads, c.d_kv}), v3 = v.view({len, heads, c.d_kv});
    Tensor attn3 = attn.view({len, heads, c.d_kv});
    be.attention_biased(attn3, q3, k3, v3, bias, len, 1.f);
    be.linear(y, attn, l.o, nullptr, Epilogue::none);
    be.add(x, y);
    // x += FC2(GELU_tanh(Gate(RMS2(x))) ⊙ FC1(RMS2(x))).
    be.rms_norm(h, x, l.norm2, c.eps);
    be.linear(gate, h, l.wi_gate, nullptr, Epilogue::gelu_tanh);
    be.linear(linear, h, l.wi_linear, nullptr, Epilogue::none);
    be.multiply(gate, linear);
    be.linear(y, gate, l.wo, nullptr, Epilogue::none);
    be.add(x, y);
  }
  be.rms_norm(out, x, weights_.final_norm, c.eps);
  be.arena().rewind(mark);
}

}  // namespace ditrun::text

#include "model/wan/dit.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "model/wan/positional.h"

namespace ditrun::wan {

namespace {

// Row i of a [rows, D] tensor as a [D] view.
Tensor row(const Tensor& t, int64_t i) { return t.slice(i, i + 1).view({t.dim(-1)}); }

}  // namespace

uint64_t DiT::next_model_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

DiT::DiT(Backend& backend, DitConfig config, DitWeights weights)
    : backend_(backend), config_(std::move(config)), w_(std::move(weights)) {
  validate_dit_config(config_);
}

uint64_t context_address_hash(const ContextCache& context) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a over the addresses
  const auto mix = [&](const Tensor& t) { hash = (hash ^ reinterpret_cast<uintptr_t>(t.data())) * 0x100000001b3ull; };
  mix(context.embedded);
  for (const auto* list : {&context.k, &context.v})
    for (const Tensor& t : *list) mix(t);
  return hash;
}

ContextCache DiT::encode_context(const std::vector<float>& context, int64_t rows) {
  ContextCache cache;
  encode_context_into(cache, context, rows);
  return cache;
}

void DiT::encode_context_into(ContextCache& cache, const std::vector<float>& context, int64_t rows) {
  const auto& c = config_;
  if (rows > c.text_len)
    throw std::invalid_argument("context has " + std::to_string(rows) + " rows, at most " +
                                std::to_string(c.text_len));
  if (static_cast<int64_t>(context.size()) != rows * c.text_dim)
    throw std::invalid_argument("context has " + std::to_string(context.size()) + " values, expected " +
                                std::to_string(rows) + " × " + std::to_string(c.text_dim));
  Backend& be = backend_;
  Arena::Scope scope(be.arena());
  const DType cd = be.compute_dtype();
  std::vector<float> padded(static_cast<size_t>(c.text_len) * c.text_dim, 0.f);
  std::copy(context.begin(), context.end(), padded.begin());
  Tensor text = be.scratch({c.text_len, c.text_dim}, cd);
  be.upload(text, padded.data());
  Tensor hidden = be.scratch({c.text_len, c.dim}, cd);
  be.linear(hidden, text, w_.text1.w, &w_.text1.b, Epilogue::gelu_tanh);
  // Every cache of this model has the same shapes: one that has its tensors keeps them.
  const size_t blocks = w_.blocks.size();
  if (cache.embedded.data() == nullptr || cache.k.size() != blocks || cache.v.size() != blocks) {
    cache.embedded = be.allocate({c.text_len, c.dim}, cd);
    cache.k.clear();
    cache.v.clear();
    for (size_t i = 0; i < blocks; ++i) {
      cache.k.push_back(be.allocate({c.text_len, c.heads, c.head_dim()}, cd));
      cache.v.push_back(be.allocate({c.text_len, c.heads, c.head_dim()}, cd));
    }
  }
  be.linear(cache.embedded, hidden, w_.text2.w, &w_.text2.b, Epilogue::none);
  for (size_t i = 0; i < blocks; ++i) {
    const auto& b = w_.blocks[i];
    Tensor k2 = cache.k[i].view({c.text_len, c.dim}), v2 = cache.v[i].view({c.text_len, c.dim});
    be.linear(k2, cache.embedded, b.cross_k.w, &b.cross_k.b, Epilogue::none);
    be.rms_norm(k2, k2, b.cross_norm_k, static_cast<float>(c.eps));
    be.linear(v2, cache.embedded, b.cross_v.w, &b.cross_v.b, Epilogue::none);
  }
}

void DiT::set_timestep(double timestep) {
  const std::vector<float> sinusoid = timestep_sinusoid(timestep, config_.freq_dim);
  if (timestep_input_.data() == nullptr) timestep_input_ = backend_.allocate({1, config_.freq_dim}, DType::f32);
  backend_.upload(timestep_input_, sinusoid.data());
}

TimeEmbedding DiT::time_embedding(double timestep) {
  set_timestep(timestep);
  return time_embedding_of_input();
}

TimeEmbedding DiT::time_embedding_of_input() {
  const auto& c = config_;
  Backend& be = backend_;
  const int64_t d = c.dim;
  // e = time_embedding(sinusoid(t)), e0 = time_projection(SiLU(e)), all fp32 (spec §1.3).
  Tensor hidden = be.scratch({1, d}, DType::f32);
  be.linear(hidden, timestep_input_, w_.time1.w, &w_.time1.b, Epilogue::none);
  be.silu(hidden, hidden);
  TimeEmbedding time{be.scratch({1, d}, DType::f32), be.scratch({6, d}, DType::f32)};
  be.linear(time.e, hidden, w_.time2.w, &w_.time2.b, Epilogue::none);
  Tensor e_silu = be.scratch({1, d}, DType::f32);
  be.silu(e_silu, time.e);
  Tensor e0_row = time.e0.view({1, 6 * d});
  be.linear(e0_row, e_silu, w_.time_proj.w, &w_.time_proj.b, Epilogue::none);
  return time;
}

Tensor DiT::block_modulation(int index, const TimeEmbedding& time) {
  Tensor m = backend_.scratch({6, config_.dim}, DType::f32);
  block_modulation(m, index, time);
  return m;
}

void DiT::block_modulation(Tensor& m, int index, const TimeEmbedding& time) {
  const float ones[2] = {1.f, 1.f};
  const Tensor* in[2] = {&w_.blocks[index].modulation, &time.e0};
  backend_.lincomb(m, ones, in);
}

void DiT::forward(Tensor& v, const Tensor& x, double timestep, const ContextCache& context) {
  const auto& c = config_;
  Backend& be = backend_;
  if (x.rank() != 4 || x.dim(0) != c.in_dim || x.dim(2) % 2 || x.dim(3) % 2)
    throw std::invalid_argument("latent has shape " + shape_string(x.shape()) + ", expected [" +
                                std::to_string(c.in_dim) + ", F, H, W] with even H and W");
  expect_shape(v, x.shape(), "velocity output");
  Arena::Scope scope(be.arena());
  const Grid grid{x.dim(1), x.dim(2) / 2, x.dim(3) / 2};
  Tensor tokens = be.scratch({grid.tokens(), c.patch_features()}, DType::f32);
  be.patchify(tokens, x);
  Tensor out = be.scratch({grid.tokens(), c.out_features()}, DType::f32);
  forward_tokens(out, tokens, grid, timestep, context, nullptr);
  be.unpatchify(v, out);
}

void DiT::forward_tokens(Tensor& v, const Tensor& x, const Grid& grid, double timestep, const ContextCache& context,
                         parallel::SequenceParallel* sp) {
  // The host's part first; then the forward, which is device work only: without sequence parallel
  // (communication) or an observer (host callbacks) it is recorded once and replayed (a CUDA graph on the GPU: no
  // launch gaps between its ~800 kernels).
  const PreparedForward prepared = prepare_forward(timestep, grid, sp);
  const auto body = [&] { forward_prepared(v, x, prepared, context, sp); };
  if (sp || observer_) {
    body();
    return;
  }
  // Everything the recording depends on: this model (an id, never reused), the tensors' addresses and the shapes.
  // The key starts with the output's part (forget_recorded_forwards).
  char rest[160];
  std::snprintf(rest, sizeof rest, "x %p ctx %p/%llx rows %lld grid %lldx%lldx%lld", x.data(),
                context.embedded.data(), static_cast<unsigned long long>(context_address_hash(context)),
                static_cast<long long>(x.dim(0)), static_cast<long long>(grid.frames),
                static_cast<long long>(grid.rows), static_cast<long long>(grid.cols));
  backend_.run_recorded(recording_key_of_output(v) + rest, body);
}

std::string DiT::recording_key_of_output(const Tensor& v) const {
  char key[64];
  std::snprintf(key, sizeof key, "dit %llu v %p ", static_cast<unsigned long long>(id_), v.data());
  return key;
}

void DiT::forget_recorded_forwards(const Tensor& v) { backend_.forget_recorded(recording_key_of_output(v)); }

DiT::PreparedForward DiT::prepare_forward(double timestep, const Grid& grid, const parallel::SequenceParallel* sp) {
  const int64_t first = sp ? sp->first_token() : 0;
  const int64_t rows = sp ? sp->shard_tokens() : grid.tokens();
  if (sp && sp->total_tokens() != grid.tokens())
    throw std::invalid_argument("sequence parallel over " + std::to_string(sp->total_tokens()) +
                                " tokens for a grid of " + std::to_string(grid.tokens()));
  set_timestep(timestep);
  const RopeAngles& rope = rope_angles(grid, first, rows);  // global positions of my rows
  return {grid, first, rows, rope.cos, rope.sin};
}

void DiT::forward_prepared(Tensor& v, const Tensor& x, const PreparedForward& prepared, const ContextCache& context,
                           parallel::SequenceParallel* sp) {
  const auto& c = config_;
  Backend& be = backend_;
  const int64_t rows = x.dim(0);
  if (x.rank() != 2 || x.dim(-1) != c.patch_features() || rows != prepared.rows ||
      v.numel() != rows * c.out_features() || (sp && rows != sp->shard_tokens()))
    throw std::invalid_argument("token latent has shape " + shape_string(x.shape()) + " for a grid of " +
                                std::to_string(prepared.grid.tokens()) + " tokens (" +
                                std::to_string(prepared.rows) + " on this rank)");
  Arena::Scope scope(be.arena());
  const DType cd = be.compute_dtype();
  const float attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim()));
  const int64_t d = c.dim;

  // Patch embedding in the compute dtype, then the residual stream in fp32 (spec §1.8).
  Tensor patches = be.scratch({rows, c.patch_features()}, cd);
  be.copy(patches, x);
  Tensor embedded = be.scratch({rows, d}, cd);
  be.linear(embedded, patches, w_.patch.w, &w_.patch.b, Epilogue::none);
  Tensor h = be.scratch({rows, d}, DType::f32);
  be.copy(h, embedded);

  const TimeEmbedding time = time_embedding_of_input();
  // Each block's modulated norm, made here for block 0 and for the others by the previous block's last residual
  // step (finish_block, one fused pass), which needs the next block's modulation: two modulation buffers taking
  // turns. Both outside the blocks' scratch, so no block holds a second norm.
  Tensor normed = be.scratch({rows, d}, cd);
  Tensor modulation[2] = {be.scratch({6, d}, DType::f32), be.scratch({6, d}, DType::f32)};
  block_modulation(modulation[0], 0, time);
  attention_norm(normed, h, modulation[0]);
  for (int i = 0; i < c.layers; ++i) {
    if (observer_) observer_(i, h);
    Arena::Scope block_scope(be.arena());
    const Tensor& m = modulation[i % 2];
    const AttentionInputs in = attention_inputs(i, h, m, prepared.rope_cos, prepared.rope_sin, &normed);
    Tensor attn = be.scratch({rows, c.heads, c.head_dim()}, cd);
    if (sp) sp->attention(be, in.q, in.k, in.v, attn, attn_scale);
    else be.attention(attn, nullptr, in.q, in.k, in.v, rows, attn_scale);
    if (i + 1 < c.layers) {
      Tensor& next_m = modulation[(i + 1) % 2];
      block_modulation(next_m, i + 1, time);
      finish_block(i, h, m, attn, context, &next_m, &normed);
    } else {
      finish_block(i, h, m, attn, context);
    }
  }
  if (observer_) observer_(c.layers, h);
  head(v, h, time);
}

const DiT::RopeAngles& DiT::rope_angles(const Grid& grid, int64_t first, int64_t count) {
  const std::array<int64_t, 5> key = {grid.frames, grid.rows, grid.cols, first, count};
  auto it = rope_cache_.find(key);
  if (it != rope_cache_.end()) return it->second;
  const int64_t pairs = config_.head_dim() / 2;
  const RopeTable table = rope_table(config_.head_dim(), grid.frames, grid.rows, grid.cols, first, count);
  RopeAngles angles{backend_.allocate({count, pairs}, DType::f32), backend_.allocate({count, pairs}, DType::f32)};
  backend_.upload(angles.cos, table.cos.data());
  backend_.upload(angles.sin, table.sin.data());
  return rope_cache_.emplace(key, std::move(angles)).first->second;
}

void DiT::head(Tensor& tokens, const Tensor& h, const TimeEmbedding& time) {
  Backend& be = backend_;
  Arena::Scope scope(be.arena());
  const int64_t d = config_.dim;
  // LN(x)·(1 + scale) + shift with (shift, scale) = head modulation + e (not e0), then an fp32 linear.
  Tensor shift_scale = be.scratch({2, d}, DType::f32);
  const float ones[2] = {1.f, 1.f};
  for (int r = 0; r < 2; ++r) {
    Tensor out_row = row(shift_scale, r), mod_row = row(w_.head_modulation, r), e_row = time.e.view({d});
    const Tensor* in[2] = {&mod_row, &e_row};
    be.lincomb(out_row, ones, in);
  }
  Tensor normed = be.scratch({h.dim(0), d}, DType::f32);
  be.layer_norm_modulate(normed, h, row(shift_scale, 0), row(shift_scale, 1), static_cast<float>(config_.eps));
  be.linear(tokens, normed, w_.head.w, &w_.head.b, Epilogue::none);
}

void DiT::attention_norm(Tensor& out, const Tensor& h, const Tensor& m) {
  backend_.layer_norm_modulate(out, h, row(m, 0), row(m, 1), static_cast<float>(config_.eps));
}

AttentionInputs DiT::attention_inputs(int index, const Tensor& h, const Tensor& m, const Tensor& rope_cos,
                                      const Tensor& rope_sin, const Tensor* normed) {
  const auto& c = config_;
  Backend& be = backend_;
  const auto& b = w_.blocks[index];
  const DType cd = be.compute_dtype();
  const int64_t rows = h.dim(0), d = c.dim;
  const float eps = static_cast<float>(c.eps);
  AttentionInputs in;
  Tensor a;
  if (normed) {
    if (normed->shape() != Shape{rows, d} || normed->dtype() != cd)
      throw std::invalid_argument("attention_inputs: normed is " + shape_string(normed->shape()));
    a = *normed;
  } else {
    a = be.scratch({rows, d}, cd);
    attention_norm(a, h, m);
  }
  in.q = be.scratch({rows, c.heads, c.head_dim()}, cd);
  // K and V side by side in one buffer: ring attention passes both to the neighbour in one exchange, no copy.
  Tensor kv = be.scratch({2, rows, c.heads, c.head_dim()}, cd);
  in.k = kv.slice(0, 1).view({rows, c.heads, c.head_dim()});
  in.v = kv.slice(1, 2).view({rows, c.heads, c.head_dim()});
  Tensor q2 = in.q.view({rows, d}), k2 = in.k.view({rows, d}), v2 = in.v.view({rows, d});
  // q and k: RMSNorm over all heads, then 3-D RoPE per head (spec §1.5-1.6), one fused pass each.
  be.linear(q2, a, b.q.w, &b.q.b, Epilogue::none);
  be.rms_norm_rope(in.q, b.norm_q, eps, rope_cos, rope_sin);
  be.linear(k2, a, b.k.w, &b.k.b, Epilogue::none);
  be.rms_norm_rope(in.k, b.norm_k, eps, rope_cos, rope_sin);
  be.linear(v2, a, b.v.w, &b.v.b, Epilogue::none);
  return in;
}

void DiT::finish_block(int index, Tensor& h, const Tensor& m, const Tensor& self_attention,
                       const ContextCache& context, const Tensor* next_m, Tensor* next_normed) {
  const auto& c = config_;
  Backend& be = backend_;
  const auto& b = w_.blocks[index];
  Arena::Scope scope(be.arena());
  const DType cd = be.compute_dtype();
  const int64_t rows = h.dim(0), d = c.dim, heads = c.heads, hd = c.head_dim();
  const float eps = static_cast<float>(c.eps);
  const float attn_scale = 1.f / std::sqrt(static_cast<float>(hd));

  // Self-attention output projection, gated residual (spec §1.4 step 2), fused with step 3's affine LayerNorm.
  Tensor y = be.scratch({rows, d}, cd);
  be.linear(y, self_attention.view({rows, d}), b.o.w, &b.o.b, Epilogue::none);
  const Tensor attention_gate = row(m, 2);
  Tensor cn = be.scratch({rows, d}, cd);
  be.add_layer_norm(h, y, &attention_gate, cn, &b.cross_norm_w, &b.cross_norm_b, nullptr, nullptr, eps);

  // 3. Cross-attention on that norm, no gate; K/V come from the context cache.
  Tensor q = be.scratch({rows, heads, hd}, cd);
  Tensor q2 = q.view({rows, d});
  be.linear(q2, cn, b.cross_q.w, &b.cross_q.b, Epilogue::none);
  be.rms_norm(q2, q2, b.cross_norm_q, eps);
  Tensor attn = be.scratch({rows, heads, hd}, cd);
  be.attention(attn, nullptr, q, context.k[index], context.v[index], c.text_len, attn_scale);
  be.linear(y, attn.view({rows, d}), b.cross_o.w, &b.cross_o.b, Epilogue::none);

  // 4. FFN on the modulated norm of the stream after the cross-attention residual (one fused pass): GELU-tanh in
  // the first GEMM's epilogue, gated residual.
  const Tensor ffn_shift = row(m, 3), ffn_scale = row(m, 4);
  Tensor a = be.scratch({rows, d}, cd);
  be.add_layer_norm(h, y, nullptr, a, nullptr, nullptr, &ffn_shift, &ffn_scale, eps);
  Tensor z = be.scratch({rows, c.ffn_dim}, cd);
  be.linear(z, a, b.ffn_in.w, &b.ffn_in.b, Epilogue::gelu_tanh);
  be.linear(y, z, b.ffn_out.w, &b.ffn_out.b, Epilogue::none);
  const Tensor ffn_gate = row(m, 5);
  if (next_m && next_normed) {  // with the next block's first step (its modulated norm), one pass
    const Tensor next_shift = row(*next_m, 0), next_scale = row(*next_m, 1);
    be.add_layer_norm(h, y, &ffn_gate, *next_normed, nullptr, nullptr, &next_shift, &next_scale, eps);
  } else {
    be.add_gated(h, y, ffn_gate);
  }
}

}  // namespace ditrun::wan

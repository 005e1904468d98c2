#include "model/wan/vae_decoder.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "comm/strided_copy.h"

namespace ditrun::wan {

namespace {

constexpr int64_t kCacheFrames = 2;  // CACHE_T (spec §4.4): a 3-tap causal conv needs the 2 frames before

void zero(Backend& be, Tensor& t) { be.lincomb(t, {}, {}); }  // an empty sum: zeros on every backend

}  // namespace

VaeDecoder::VaeDecoder(Backend& backend, VaeConfig config, VaeDecoderWeights weights)
    : backend_(backend), config_(std::move(config)), w_(std::move(weights)) {
  validate_vae_config(config_);
  latents_mean_ = backend_.allocate({config_.z_dim}, DType::f32);
  latents_std_ = backend_.allocate({config_.z_dim}, DType::f32);
  backend_.upload(latents_mean_, config_.latents_mean.data());
  backend_.upload(latents_std_, config_.latents_std.data());
}

VaeDecoder::CacheSlot& VaeDecoder::slot(int index, int64_t h, int64_t w, int64_t c) {
  if (cache_.size() <= static_cast<size_t>(index)) cache_.resize(static_cast<size_t>(index) + 1);
  CacheSlot& s = cache_[index];
  const Shape shape = {kCacheFrames, h, w, c};
  if (s.frames.data() == nullptr || s.frames.shape() != shape) {  // first use at this size: zeros
    s.frames = backend_.allocate(shape, DType::f32);
    zero(backend_, s.frames);
  }
  const Shape halo_shape = {2, kCacheFrames, w, c};
  if (rows_split() && (s.halos.data() == nullptr || s.halos.shape() != halo_shape)) {
    s.halos = backend_.allocate(halo_shape, DType::f32);
    zero(backend_, s.halos);
  }
  return s;
}

void VaeDecoder::keep_history(CacheSlot& cache, const Tensor& x) {
  const int64_t n = x.dim(0);
  if (n >= kCacheFrames) {
    backend_.copy(cache.frames, x.slice(n - kCacheFrames, n));
    return;
  }
  // One new frame: [old last frame, x] (spec §4.4 generic rule).
  Tensor first = cache.frames.slice(0, 1), second = cache.frames.slice(1, 2);
  backend_.copy(first, cache.frames.slice(1, 2));
  backend_.copy(second, x);
}

void VaeDecoder::split_rows_over(comm::Comm* vae_group) { group_ = vae_group; }

Tensor VaeDecoder::causal_conv(const VaeConv& conv, int slot_index, const Tensor& x) {
  if (rows_split() && conv.w.dim(2) > 1) return band_conv(conv, slot_index, x, nullptr);
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  CacheSlot& cache = slot(slot_index, h, w, c);
  const int64_t kh = conv.w.dim(2), kw = conv.w.dim(3);
  Tensor y = backend_.scratch({n + kCacheFrames - conv.w.dim(1) + 1, h, w, conv.w.dim(0)}, DType::f32);
  backend_.causal_conv3d(y, &cache.frames, x, nullptr, conv.w, &conv.b, static_cast<int>(kh / 2),
                         static_cast<int>(kw / 2));
  keep_history(cache, x);  // after the convolution read the old history (stream order on the GPU)
  return y;
}

Tensor VaeDecoder::norm_silu_causal_conv(const Tensor& gamma, const VaeConv& conv, int slot_index, const Tensor& x,
                                         const Tensor* residual, Tensor* into) {
  if (rows_split()) return band_conv(conv, slot_index, x, &gamma, residual, into);
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  CacheSlot& cache = slot(slot_index, h, w, c);
  Tensor y = into ? *into : backend_.scratch({n, h, w, conv.w.dim(0)}, DType::f32);
  backend_.causal_conv3d(y, &cache.frames, x, &gamma, conv.w, &conv.b, 1, 1, residual);
  keep_history(cache, x);
  return y;
}

Tensor VaeDecoder::band_conv(const VaeConv& conv, int slot_index, const Tensor& x, const Tensor* gamma,
                             const Tensor* residual, Tensor* into) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  CacheSlot* cache = slot_index >= 0 ? &slot(slot_index, h, w, c) : nullptr;
  const int64_t history = cache ? kCacheFrames : 0, frames = history + n;
  // The halo rows of [history; x]: the cached frames' from the cache, the new frames' from the neighbours.
  Tensor halos = backend_.scratch({2, frames, w, c}, DType::f32);
  const size_t row_bytes = static_cast<size_t>(w * c) * sizeof(float);
  const comm::Stream stream{backend_.stream_handle()};
  char* halo_base = static_cast<char*>(halos.data());
  if (cache)  // both sides in one pitched copy: side s's 2 cached frames to the start of side s
    comm::copy_strided(group_->memory(), halo_base, frames * row_bytes, cache->halos.data(),
                       kCacheFrames * row_bytes, kCacheFrames * row_bytes, 2, stream);
  parallel::exchange_halo_rows(backend_, *group_, x, halos, history);
  const int64_t kt = conv.w.dim(1), kw = conv.w.dim(3);
  Tensor y = into ? *into : backend_.scratch({frames - kt + 1, h, w, conv.w.dim(0)}, DType::f32);
  // The halos in place of the H padding; the norm (when gamma is given) runs on them too: it is per pixel.
  backend_.causal_conv3d(y, cache ? &cache->frames : nullptr, x, gamma, conv.w, &conv.b, /*pad_h=*/1,
                         static_cast<int>(kw / 2), residual, &halos);
  if (cache) {  // the last 2 frames and their halo rows: the neighbours' rows of those frames do not change
    keep_history(*cache, x);
    comm::copy_strided(group_->memory(), cache->halos.data(), kCacheFrames * row_bytes,
                       halo_base + (frames - kCacheFrames) * row_bytes, frames * row_bytes, kCacheFrames * row_bytes,
                       2, stream);
  }
  return y;
}

// ResidualBlock (spec §4.2): [RMS_norm, SiLU, conv1, RMS_norm, SiLU, conv2] + shortcut; two cache slots. The
// result is allocated first and the block's temporaries released on return, so a latent frame's scratch holds
// the blocks' outputs, not every intermediate of every block (720p: ~20 GB instead of more than the GPU has).
Tensor VaeDecoder::residual_block(const VaeResidualBlock& block, int& next_slot, const Tensor& x) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), ci = x.dim(3), co = block.conv1.w.dim(0);
  Tensor result = backend_.scratch({n, h, w, co}, DType::f32);
  Arena::Scope scope(backend_.arena());
  Tensor shortcut = x;
  if (block.has_shortcut) {
    shortcut = backend_.scratch({n, h, w, co}, DType::f32);
    Tensor rows_out = shortcut.view({n * h * w, co});
    backend_.linear(rows_out, x.view({n * h * w, ci}), block.shortcut.w, &block.shortcut.b, Epilogue::none);
  }
  const Tensor y = norm_silu_causal_conv(block.norm1, block.conv1, next_slot++, x);
  // conv2 writes result = conv2(…) + shortcut (the sum in the convolution's epilogue on the GPU).
  norm_silu_causal_conv(block.norm2, block.conv2, next_slot++, y, &shortcut, &result);
  return result;
}

// AttentionBlock (spec §4.2): per frame, RMS_norm, q/k/v by 1×1 convs, one head of width C over the H·W pixels,
// proj, + identity. Works in place on x. With a row split the attention still runs over all pixels of the frame
// (at the smallest resolution, h × w): every rank gathers the whole frame and computes K and V for all of it, but
// the queries, the attention and the projection only for its own band's pixels, so the quadratic part is split.
Tensor VaeDecoder::attention_block(const VaeAttentionBlock& block, const Tensor& x) {
  const int64_t n = x.dim(0), rows = x.dim(1), w = x.dim(2), c = x.dim(3);
  const int64_t tokens = (rows_split() ? latent_rows_ : rows) * w, mine = rows * w;
  const int64_t first = rows_split() ? band_.first * w : 0;
  const float scale = 1.f / std::sqrt(static_cast<float>(c));
  const Tensor wq = block.qkv.w.slice(0, c), wk = block.qkv.w.slice(c, 2 * c), wv = block.qkv.w.slice(2 * c, 3 * c);
  const Tensor bq = block.qkv.b.slice(0, c), bk = block.qkv.b.slice(c, 2 * c), bv = block.qkv.b.slice(2 * c, 3 * c);
  for (int64_t t = 0; t < n; ++t) {
    Arena::Scope scope(backend_.arena());
    Tensor frame = x.slice(t, t + 1).view({mine, c});
    Tensor whole = frame;
    if (rows_split()) {
      whole = backend_.scratch({tokens, c}, DType::f32);
      Tensor gathered = whole.view({1, latent_rows_, w * c});
      parallel::gather_row_bands(backend_, *group_, frame.view({1, rows, w * c}), gathered, latent_rows_, 1);
    }
    Tensor normed = backend_.scratch({tokens, c}, DType::f32);
    backend_.vae_rms_norm(normed, whole, block.norm, /*then_silu=*/false);
    Tensor q = backend_.scratch({mine, 1, c}, DType::f32), k = backend_.scratch({tokens, 1, c}, DType::f32),
           v = backend_.scratch({tokens, 1, c}, DType::f32);
    Tensor q2 = q.view({mine, c}), k2 = k.view({tokens, c}), v2 = v.view({tokens, c});
    backend_.linear(q2, normed.slice(first, first + mine), wq, &bq, Epilogue::none);
    backend_.linear(k2, normed, wk, &bk, Epilogue::none);
    backend_.linear(v2, normed, wv, &bv, Epilogue::none);
    Tensor attended = backend_.scratch({mine, 1, c}, DType::f32);
    backend_.attention(attended, nullptr, q, k, v, tokens, scale);
    Tensor projected = backend_.scratch({mine, c}, DType::f32);
    backend_.linear(projected, attended.view({mine, c}), block.proj.w, &block.proj.b, Epilogue::none);
    backend_.add(frame, projected);
  }
  return x;
}

// Resample upsample2d/upsample3d (spec §4.2, §4.4). upsample3d owns one cache slot; on the first chunk its
// time_conv is skipped (1 frame stays 1 frame), from the second on it sees frames 1.. with zeros before.
Tensor VaeDecoder::upsample(const VaeUpsampler& up, int& next_slot, const Tensor& x, bool first_chunk) {
  // The result first, the temporaries released on return (as in residual_block).
  const int64_t frames_out = up.temporal && !first_chunk ? 2 * x.dim(0) : x.dim(0);
  Tensor result = backend_.scratch({frames_out, 2 * x.dim(1), 2 * x.dim(2), up.spatial.w.dim(0)}, DType::f32);
  Arena::Scope scope(backend_.arena());
  Tensor frames = x;
  if (up.temporal) {
    const int slot_index = next_slot++;
    if (!first_chunk) {
      const Tensor doubled = causal_conv(up.time_conv, slot_index, x);  // [n, H, W, 2C]
      frames = backend_.scratch({2 * x.dim(0), x.dim(1), x.dim(2), x.dim(3)}, DType::f32);
      backend_.channels_to_frames(frames, doubled, 2);
    }
  }
  const int64_t m = frames.dim(0), h = frames.dim(1), w = frames.dim(2), c = frames.dim(3);
  Tensor upsampled = backend_.scratch({m, 2 * h, 2 * w, c}, DType::f32);
  backend_.upsample_nearest2x(upsampled, frames);
  if (rows_split()) {
    backend_.copy(result, band_conv(up.spatial, -1, upsampled, nullptr));  // nearest ×2 doubled the band too
    return result;
  }
  backend_.conv3d(result, upsampled, up.spatial.w, &up.spatial.b, 1, 1);
  return result;
}

void VaeDecoder::begin(const Tensor& latents) {
  const auto& c = config_;
  if (latents.rank() != 4 || latents.dim(0) != c.z_dim || latents.dim(1) < 1 || latents.dim(2) < 1 ||
      latents.dim(3) < 1)
    throw std::invalid_argument("VAE latents have shape " + shape_string(latents.shape()) + ", expected [" +
                                std::to_string(c.z_dim) + ", T, h, w]");
  if (latents.dtype() != DType::f32 || latents.device() != backend_.device())
    throw std::invalid_argument("VAE latents must be f32 on the " + backend_.name() + " backend");
  const int64_t t = latents.dim(1), h = latents.dim(2), w = latents.dim(3), z = c.z_dim;
  // Every rank checks the same shape, so all of them refuse a split with empty bands before any exchange.
  const parallel::RowBand band = rows_split() ? parallel::row_band(h, group_->size(), group_->rank())
                                              : parallel::RowBand{0, h};
  const Shape z_shape = {t, h, w, z};
  if (z_.data() == nullptr || z_.shape() != z_shape) z_ = backend_.allocate(z_shape, DType::f32);
  {
    // De-normalise (z·std + mean, spec §4.1) into channels-last, then post_quant_conv on the whole latent.
    Arena::Scope scope(backend_.arena());
    Tensor denormalised = backend_.scratch(z_shape, DType::f32);
    backend_.latent_to_channels_last(denormalised, latents, latents_std_, latents_mean_);
    Tensor rows = z_.view({t * h * w, z});
    backend_.linear(rows, denormalised.view({t * h * w, z}), w_.post_quant.w, &w_.post_quant.b, Epilogue::none);
  }
  const int64_t s = c.spatial_factor();
  const Shape out_shape = {c.temporal_factor(), c.out_channels, s * band.count, s * w};
  if (out_frames_.data() == nullptr || out_frames_.shape() != out_shape)
    out_frames_ = backend_.allocate(out_shape, DType::f32);
  const Shape whole_shape = {c.temporal_factor(), c.out_channels, s * h, s * w};
  if (rows_split() && (whole_frames_.data() == nullptr || whole_frames_.shape() != whole_shape))
    whole_frames_ = backend_.allocate(whole_shape, DType::f32);
  for (CacheSlot& slot : cache_) {  // cache reset before each decode
    if (slot.frames.data() != nullptr) zero(backend_, slot.frames);
    if (slot.halos.data() != nullptr) zero(backend_, slot.halos);
  }
  latent_frames_ = t;
  latent_rows_ = h;
  band_ = band;
  next_latent_frame_ = 0;
}

Tensor VaeDecoder::decode_latent_frame(int64_t index) {
  if (index != next_latent_frame_ || index >= latent_frames_)
    throw std::logic_error("VAE decode_latent_frame(" + std::to_string(index) + "): expected latent frame " +
                           std::to_string(next_latent_frame_) + " of " + std::to_string(latent_frames_));
  Arena::Scope scope(backend_.arena());
  const bool first_chunk = index == 0;
  int next_slot = 0;  // cache slots in forward-call order (spec §4.4)
  Tensor z = z_.slice(index, index + 1);
  if (rows_split())  // this rank's band of the latent frame (post_quant_conv ran on the whole latent, 1×1)
    z = z.view({latent_rows_, z.dim(2), z.dim(3)}).slice(band_.first, band_.first + band_.count)
            .view({1, band_.count, z.dim(2), z.dim(3)});
  Tensor x = causal_conv(w_.conv_in, next_slot++, z);
  x = residual_block(w_.mid_first, next_slot, x);
  x = attention_block(w_.mid_attention, x);
  x = residual_block(w_.mid_second, next_slot, x);
  for (const VaeUpBlock& block : w_.up_blocks) {
    for (const VaeResidualBlock& res : block.resnets) x = residual_block(res, next_slot, x);
    if (block.has_upsampler) x = upsample(block.upsampler, next_slot, x, first_chunk);
  }
  x = norm_silu_causal_conv(w_.norm_out, w_.conv_out, next_slot++, x);  // head: RMS_norm, SiLU, conv
  Tensor frames = out_frames_.slice(0, x.dim(0));
  backend_.frames_to_planar(frames, x, -1.f, 1.f);
  ++next_latent_frame_;
  return frames;
}

Tensor VaeDecoder::gather_frames(const Tensor& band_frames) {
  if (!rows_split()) return band_frames;
  const int64_t n = band_frames.dim(0), ch = band_frames.dim(1), width = band_frames.dim(3);
  Tensor whole = whole_frames_.slice(0, n);
  Tensor rows = whole.view({n * ch, whole.dim(2), width});
  parallel::gather_row_bands(backend_, *group_, band_frames.view({n * ch, band_frames.dim(2), width}), rows,
                             latent_rows_, config_.spatial_factor());
  return whole;
}

void VaeDecoder::decode(const Tensor& latents, const FrameSink& sink) {
  begin(latents);
  int64_t first = 0;
  for (int64_t i = 0; i < latent_frames_; ++i) {
    const Tensor frames = decode_latent_frame(i);
    sink(first, frames);
    first += frames.dim(0);
  }
}

std::vector<float> VaeDecoder::decode(std::span<const float> latents, const Shape& shape) {
  if (static_cast<int64_t>(latents.size()) != shape_numel(shape))
    throw std::invalid_argument("VAE latents: " + std::to_string(latents.size()) + " values for shape " +
                                shape_string(shape));
  Tensor on_backend = backend_.allocate(shape, DType::f32);
  backend_.upload(on_backend, latents.data());
  const int64_t s = config_.spatial_factor();
  const int64_t frame_values = config_.out_channels * s * shape.at(2) * s * shape.at(3);
  std::vector<float> frames(static_cast<size_t>(config_.output_frames(shape.at(1)) * frame_values));
  decode(on_backend, [&](int64_t first, const Tensor& chunk) {
    backend_.download(gather_frames(chunk), frames.data() + first * frame_values);
  });
  return frames;
}

}  // namespace ditrun::wan

// The Wan-VAE decoder (spec §4.4), written once against the op interface: the chunked causal decode, one latent
// frame at a time, with a feature cache of the last CACHE_T = 2 input frames per cached convolution. Output
// frames come out chunk by chunk (1 frame for latent frame 0, then 4 per latent frame) as soon as they exist, so a
// video encoder can take them while the next latent frame decodes.
// With a VAE group of P > 1 ranks each rank decodes one band of rows of every frame (model/parallel/row_bands.h):
// 3×3 convolutions exchange one halo row with the neighbouring bands, the mid-block attention gathers the whole
// frame; the result equals the single-rank decode.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "comm/comm.h"
#include "model/core/backend.h"
#include "model/parallel/row_bands.h"
#include "model/wan/vae_config.h"
#include "model/wan/vae_weights.h"

namespace ditrun::wan {

class VaeDecoder {
 public:
  VaeDecoder(Backend& backend, VaeConfig config, VaeDecoderWeights weights);

  const VaeConfig& config() const { return config_; }
  Backend& backend() { return backend_; }

  // Splits the rows of every frame over `vae_group` (its communicator lives longer than the decoder's use of it):
  // rank r decodes band r of parallel::row_band(h, P, r) latent rows, 8× as many output rows. nullptr or a group
  // of one rank: the whole frame on this rank, the single-rank code path. Set before begin().
  void split_rows_over(comm::Comm* vae_group);
  comm::Comm* group() const { return group_; }
  bool rows_split() const { return group_ != nullptr && group_->size() > 1; }
  // This rank's latent rows of the current decode (all h of them without a split); valid after begin().
  parallel::RowBand band() const { return band_; }
  // The whole frames of a chunk from every rank's band (collective over the group; every rank gets them): frames
  // [n, 3, band rows, W] as decode_latent_frame returns them -> [n, 3, H, W], valid until the next call. Without a
  // split it returns `band_frames` itself.
  Tensor gather_frames(const Tensor& band_frames);

  // Receives the frames of one chunk: frames [n, 3, H, W] f32 on the backend, planar RGB in [−1, 1], valid during
  // the call; first_frame is the index of frames[0] in the video. With a row split H is this rank's band of rows
  // (gather_frames makes whole frames of them).
  using FrameSink = std::function<void(int64_t first_frame, const Tensor& frames)>;

  // Decodes latents [z_dim, T, h, w] (normalised, as the DiT produces them; f32 on the backend) into
  // output_frames(T) frames of 8h × 8w, handing each chunk to `sink` in order.
  void decode(const Tensor& latents, const FrameSink& sink);
  // The same from and to the host: latents [z_dim, T, h, w] -> frames [F, 3, 8h, 8w] (whole frames on every rank
  // of a row split).
  std::vector<float> decode(std::span<const float> latents, const Shape& shape);

  // The pieces of decode(), for callers that interleave other work between latent frames:
  // begin() de-normalises, applies post_quant_conv to the whole latent and resets the feature cache;
  // decode_latent_frame(i) (i = 0, 1, ... in order) returns that chunk's frames, valid until the next call.
  void begin(const Tensor& latents);
  Tensor decode_latent_frame(int64_t index);
  int64_t latent_frames() const { return latent_frames_; }

 private:
  // The input history of one cached convolution (spec §4.4): its last 2 input frames, zeros before the first.
  // For a convolution behind RMS_norm + SiLU the frames are kept before the norm: Backend::causal_conv3d
  // normalises history and new frames alike, which gives the reference's cache of normalised frames.
  struct CacheSlot {
    Tensor frames;  // [2, H, W, C]
    Tensor halos;   // with a row split: [2, 2, W, C], the halo rows above (0) and below (1) those frames
  };
  CacheSlot& slot(int index, int64_t h, int64_t w, int64_t c);
  // The cache after a convolution over [cache; x]: the last 2 frames of that sequence.
  void keep_history(CacheSlot& cache, const Tensor& x);

  // The layers on channels-last activations [n, H, W, C]; each returns a scratch tensor.
  Tensor causal_conv(const VaeConv& conv, int slot_index, const Tensor& x);
  // residual (optional) is added to the result; into (optional) receives it instead of a new scratch tensor.
  Tensor norm_silu_causal_conv(const Tensor& gamma, const VaeConv& conv, int slot_index, const Tensor& x,
                               const Tensor* residual = nullptr, Tensor* into = nullptr);
  Tensor residual_block(const VaeResidualBlock& block, int& next_slot, const Tensor& x);
  Tensor attention_block(const VaeAttentionBlock& block, const Tensor& x);
  Tensor upsample(const VaeUpsampler& up, int& next_slot, const Tensor& x, bool first_chunk);
  // A convolution with a 3×3 spatial kernel on this rank's band of rows: its input (x, or RMS_norm + SiLU of x when
  // `gamma` is given) gets one halo row above and below from the neighbours, and the cached history (slot_index
  // ≥ 0; −1 for none) keeps the halo rows of its frames, so later chunks need no re-exchange.
  Tensor band_conv(const VaeConv& conv, int slot_index, const Tensor& x, const Tensor* gamma,
                   const Tensor* residual = nullptr, Tensor* into = nullptr);

  Backend& backend_;
  VaeConfig config_;
  VaeDecoderWeights w_;
  Tensor latents_mean_, latents_std_;  // [z_dim] f32
  Tensor z_;                           // [T, h, w, z_dim]: post_quant_conv output of the current decode
  int64_t latent_frames_ = 0;
  int64_t next_latent_frame_ = 0;
  Tensor out_frames_;                  // [frames per chunk, 3, H, W]
  std::vector<CacheSlot> cache_;
  comm::Comm* group_ = nullptr;        // the VAE group of a row split, or nullptr
  parallel::RowBand band_;             // this rank's latent rows
  int64_t latent_rows_ = 0;            // h of the current decode
  Tensor whole_frames_;                // [frames per chunk, 3, H, W]: gather_frames' result
};

}  // namespace ditrun::wan

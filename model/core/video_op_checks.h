// The argument checks of the video ops (model/core/backend.h, Wan-VAE section), shared by every backend so that the
// contracts are written once: f32 storage, ranks and shapes. Each throws std::invalid_argument
// "<backend> <op>: <what>" and returns the sizes the op works with. A backend checks its own device on top.
#pragma once
#include <cstdint>

#include "model/core/tensor.h"

namespace ditrun::video_checks {

struct Conv3dSizes {
  int64_t ti, hi, wi, ci;  // input [T, H, W, Ci]
  int64_t co, kt, kh, kw;  // weight [Co, kt, kh, kw, Ci]
};
Conv3dSizes conv3d(const char* backend, const Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias,
                   int pad_h, int pad_w);
// Backend::causal_conv3d: history (optional) and x [*, H, W, C] alike, gamma (optional) [C], residual (optional)
// shaped as out, halo_rows (optional) [2, ti, W, C] with pad_h 1; the conv3d checks on the concatenated input.
// Returns the sizes of that input (ti = history frames + x frames).
Conv3dSizes causal_conv3d(const char* backend, const Tensor& out, const Tensor* history, const Tensor& x,
                          const Tensor* gamma, const Tensor& weight, const Tensor* bias, int pad_h, int pad_w,
                          const Tensor* residual, const Tensor* halo_rows);
void vae_rms_norm(const char* backend, const Tensor& out, const Tensor& x, const Tensor& gamma);
// in [T, H, W, C]: returns {T, H, W, C} for the three ops that take a channels-last video.
struct VideoSizes {
  int64_t t, h, w, c;
};
VideoSizes upsample_nearest2x(const char* backend, const Tensor& out, const Tensor& in);
VideoSizes channels_to_frames(const char* backend, const Tensor& out, const Tensor& in, int factor);  // c = C/factor
VideoSizes frames_to_planar(const char* backend, const Tensor& out, const Tensor& in);
// in [C, T, H, W]: returns {T, H, W, C}.
VideoSizes latent_to_channels_last(const char* backend, const Tensor& out, const Tensor& in, const Tensor& scale,
                                   const Tensor& shift);

}  // namespace ditrun::video_checks

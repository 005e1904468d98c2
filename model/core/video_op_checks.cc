#include "model/core/video_op_checks.h"

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace ditrun::video_checks {

namespace {

[[noreturn]] void invalid(const char* backend, const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(backend) + " " + op + ": " + what);
}

// f32 (null entries are optional tensors left out).
void require_f32(const char* backend, const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t && t->dtype() != DType::f32)
      invalid(backend, op, "expected f32, got " + std::string(dtype_name(t->dtype())) + " " + shape_string(t->shape()));
}

void require_rank(const char* backend, const char* op, const Tensor& t, int rank, const char* what) {
  if (t.rank() != rank)
    invalid(backend, op, std::string(what) + " " + shape_string(t.shape()) + " is not " + std::to_string(rank) + "-D");
}

}  // namespace

Conv3dSizes conv3d(const char* backend, const Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias,
                   int pad_h, int pad_w) {
  require_f32(backend, "conv3d", {&out, &in, &weight, bias});
  require_rank(backend, "conv3d", in, 4, "in");
  require_rank(backend, "conv3d", weight, 5, "weight");
  const Conv3dSizes s{in.dim(0),     in.dim(1),     in.dim(2),     in.dim(3),
                      weight.dim(0), weight.dim(1), weight.dim(2), weight.dim(3)};
  const int64_t to = s.ti - s.kt + 1, ho = s.hi + 2 * pad_h - s.kh + 1, wo = s.wi + 2 * pad_w - s.kw + 1;
  if (weight.dim(4) != s.ci || to < 1 || ho < 1 || wo < 1 || pad_h < 0 || pad_w < 0 ||
      out.shape() != Shape{to, ho, wo, s.co} || (bias && bias->numel() != s.co))
    invalid(backend, "conv3d",
            "in " + shape_string(in.shape()) + " weight " + shape_string(weight.shape()) + " pad " +
                std::to_string(pad_h) + "," + std::to_string(pad_w) + " out " + shape_string(out.shape()));
  return s;
}

Conv3dSizes causal_conv3d(const char* backend, const Tensor& out, const Tensor* history, const Tensor& x,
                          const Tensor* gamma, const Tensor& weight, const Tensor* bias, int pad_h, int pad_w,
                          const Tensor* residual, const Tensor* halo_rows) {
  require_f32(backend, "causal_conv3d", {&out, history, &x, gamma, &weight, bias, residual, halo_rows});
  if (residual && residual->shape() != out.shape())
    invalid(backend, "causal_conv3d",
            "residual " + shape_string(residual->shape()) + " for out " + shape_string(out.shape()));
  require_rank(backend, "causal_conv3d", x, 4, "x");
  if (history) {
    require_rank(backend, "causal_conv3d", *history, 4, "history");
    if (history->dim(1) != x.dim(1) || history->dim(2) != x.dim(2) || history->dim(3) != x.dim(3))
      invalid(backend, "causal_conv3d",
              "history " + shape_string(history->shape()) + " does not match x " + shape_string(x.shape()));
  }
  if (gamma && gamma->numel() != x.dim(3))
    invalid(backend, "causal_conv3d", "gamma " + shape_string(gamma->shape()) + " for x " + shape_string(x.shape()));
  const int64_t frames = (history ? history->dim(0) : 0) + x.dim(0);
  if (halo_rows && (halo_rows->shape() != Shape{2, frames, x.dim(2), x.dim(3)} || pad_h != 1))
    invalid(backend, "causal_conv3d",
            "halo_rows " + shape_string(halo_rows->shape()) + " with pad_h " + std::to_string(pad_h) + " for " +
                std::to_string(frames) + " frames of x " + shape_string(x.shape()) + " (needs [2, frames, W, C], pad_h 1)");
  // The concatenated input's shape, checked as conv3d's (a tensor header only: no data is touched).
  const Tensor joined(nullptr, DType::f32, x.device(), {frames, x.dim(1), x.dim(2), x.dim(3)});
  return conv3d(backend, out, joined, weight, bias, pad_h, pad_w);
}

void vae_rms_norm(const char* backend, const Tensor& out, const Tensor& x, const Tensor& gamma) {
  require_f32(backend, "vae_rms_norm", {&out, &x, &gamma});
  if (out.numel() != x.numel() || gamma.numel() != x.dim(-1))
    invalid(backend, "vae_rms_norm",
            "x " + shape_string(x.shape()) + " gamma " + shape_string(gamma.shape()) + " out " +
                shape_string(out.shape()));
}

VideoSizes upsample_nearest2x(const char* backend, const Tensor& out, const Tensor& in) {
  require_f32(backend, "upsample_nearest2x", {&out, &in});
  require_rank(backend, "upsample_nearest2x", in, 4, "in");
  const VideoSizes s{in.dim(0), in.dim(1), in.dim(2), in.dim(3)};
  if (out.shape() != Shape{s.t, 2 * s.h, 2 * s.w, s.c})
    invalid(backend, "upsample_nearest2x", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  return s;
}

VideoSizes channels_to_frames(const char* backend, const Tensor& out, const Tensor& in, int factor) {
  require_f32(backend, "channels_to_frames", {&out, &in});
  require_rank(backend, "channels_to_frames", in, 4, "in");
  const VideoSizes s{in.dim(0), in.dim(1), in.dim(2), factor > 0 ? in.dim(3) / factor : 0};
  if (factor < 1 || s.c * factor != in.dim(3) || out.shape() != Shape{factor * s.t, s.h, s.w, s.c})
    invalid(backend, "channels_to_frames",
            "in " + shape_string(in.shape()) + " factor " + std::to_string(factor) + " out " +
                shape_string(out.shape()));
  return s;
}

VideoSizes frames_to_planar(const char* backend, const Tensor& out, const Tensor& in) {
  require_f32(backend, "frames_to_planar", {&out, &in});
  require_rank(backend, "frames_to_planar", in, 4, "in");
  const VideoSizes s{in.dim(0), in.dim(1), in.dim(2), in.dim(3)};
  if (out.shape() != Shape{s.t, s.c, s.h, s.w})
    invalid(backend, "frames_to_planar", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  return s;
}

VideoSizes latent_to_channels_last(const char* backend, const Tensor& out, const Tensor& in, const Tensor& scale,
                                   const Tensor& shift) {
  require_f32(backend, "latent_to_channels_last", {&out, &in, &scale, &shift});
  require_rank(backend, "latent_to_channels_last", in, 4, "in");
  const VideoSizes s{in.dim(1), in.dim(2), in.dim(3), in.dim(0)};
  if (out.shape() != Shape{s.t, s.h, s.w, s.c} || scale.numel() != s.c || shift.numel() != s.c)
    invalid(backend, "latent_to_channels_last",
            "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()) + " scale " +
                shape_string(scale.shape()) + " shift " + shape_string(shift.shape()));
  return s;
}

}  // namespace ditrun::video_checks

// The video ops of the CUDA backend (the Wan-VAE decoder, spec §4): argument checks, then the kernels of
// video_ops.cu. f32 storage for now; the same contracts as the CPU reference (model/core/backend.h).
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "model/cuda/cuda_backend.h"
#include "model/cuda/video_ops.h"

namespace ditrun {

namespace {

[[noreturn]] void invalid(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("cuda ") + op + ": " + what);
}

// On the GPU and f32 (null entries are optional tensors left out).
void require_f32_on_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (!t) continue;
    if (t->device() != Device::cuda) invalid(op, "tensor " + shape_string(t->shape()) + " is not on the GPU");
    if (t->dtype() != DType::f32)
      invalid(op, "expected f32, got " + std::string(dtype_name(t->dtype())) + " " + shape_string(t->shape()));
  }
}

void require_rank(const char* op, const Tensor& t, int rank, const char* what) {
  if (t.rank() != rank)
    invalid(op, std::string(what) + " " + shape_string(t.shape()) + " is not " + std::to_string(rank) + "-D");
}

}  // namespace

void CudaBackend::conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h,
                         int pad_w) {
  require_f32_on_device("conv3d", {&out, &in, &weight, bias});
  require_rank("conv3d", in, 4, "in");
  require_rank("conv3d", weight, 5, "weight");
  const int64_t ti = in.dim(0), hi = in.dim(1), wi = in.dim(2), ci = in.dim(3);
  const int64_t co = weight.dim(0), kt = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  const int64_t to = ti - kt + 1, ho = hi + 2 * pad_h - kh + 1, wo = wi + 2 * pad_w - kw + 1;
  if (weight.dim(4) != ci || to < 1 || ho < 1 || wo < 1 || pad_h < 0 || pad_w < 0 ||
      out.shape() != Shape{to, ho, wo, co} || (bias && bias->numel() != co))
    invalid("conv3d", "in " + shape_string(in.shape()) + " weight " + shape_string(weight.shape()) + " pad " +
                          std::to_string(pad_h) + "," + std::to_string(pad_w) + " out " + shape_string(out.shape()));
  cuda::conv3d(out.ptr<float>(), in.ptr<float>(), weight.ptr<float>(), bias ? bias->ptr<float>() : nullptr, ti, hi,
               wi, ci, co, kt, kh, kw, pad_h, pad_w, stream());
}

void CudaBackend::vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) {
  require_f32_on_device("vae_rms_norm", {&out, &x, &gamma});
  const int64_t d = x.dim(-1);
  if (out.numel() != x.numel() || gamma.numel() != d)
    invalid("vae_rms_norm", "x " + shape_string(x.shape()) + " gamma " + shape_string(gamma.shape()) + " out " +
                                shape_string(out.shape()));
  cuda::vae_rms_norm(out.ptr<float>(), x.ptr<float>(), gamma.ptr<float>(), x.rows(), d, then_silu, stream());
}

void CudaBackend::upsample_nearest2x(Tensor& out, const Tensor& in) {
  require_f32_on_device("upsample_nearest2x", {&out, &in});
  require_rank("upsample_nearest2x", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2), c = in.dim(3);
  if (out.shape() != Shape{t, 2 * h, 2 * w, c})
    invalid("upsample_nearest2x", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  cuda::upsample_nearest2x(out.ptr<float>(), in.ptr<float>(), t, h, w, c, stream());
}

void CudaBackend::channels_to_frames(Tensor& out, const Tensor& in, int factor) {
  require_f32_on_device("channels_to_frames", {&out, &in});
  require_rank("channels_to_frames", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2);
  const int64_t c = factor > 0 ? in.dim(3) / factor : 0;
  if (factor < 1 || c * factor != in.dim(3) || out.shape() != Shape{factor * t, h, w, c})
    invalid("channels_to_frames", "in " + shape_string(in.shape()) + " factor " + std::to_string(factor) + " out " +
                                      shape_string(out.shape()));
  cuda::channels_to_frames(out.ptr<float>(), in.ptr<float>(), t, h, w, c, factor, stream());
}

void CudaBackend::latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) {
  require_f32_on_device("latent_to_channels_last", {&out, &in, &scale, &shift});
  require_rank("latent_to_channels_last", in, 4, "in");
  const int64_t c = in.dim(0), t = in.dim(1), h = in.dim(2), w = in.dim(3);
  if (out.shape() != Shape{t, h, w, c} || scale.numel() != c || shift.numel() != c)
    invalid("latent_to_channels_last", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()) +
                                           " scale " + shape_string(scale.shape()) + " shift " +
                                           shape_string(shift.shape()));
  cuda::latent_to_channels_last(out.ptr<float>(), in.ptr<float>(), scale.ptr<float>(), shift.ptr<float>(), c, t, h,
                                w, stream());
}

void CudaBackend::frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) {
  require_f32_on_device("frames_to_planar", {&out, &in});
  require_rank("frames_to_planar", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2), c = in.dim(3);
  if (out.shape() != Shape{t, c, h, w})
    invalid("frames_to_planar", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  cuda::frames_to_planar(out.ptr<float>(), in.ptr<float>(), t, h, w, c, lo, hi, stream());
}

}  // namespace ditrun

// The video ops of the CUDA backend (the Wan-VAE decoder, spec §4): argument checks, then the kernels of
// video_ops.cu and conv3d_igemm.cu. f32 activations, convolutions on bf16 tensor cores with fp32 accumulation; the
// same contracts as the CPU reference (model/core/backend.h).
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "model/core/video_op_checks.h"
#include "model/cuda/conv3d_igemm.h"
#include "model/cuda/cuda_backend.h"
#include "model/cuda/video_ops.h"

namespace ditrun {

namespace {

// On the GPU (null entries are optional tensors left out); the rest is model/core/video_op_checks.
void require_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t && t->device() != Device::cuda)
      throw std::invalid_argument(std::string("cuda ") + op + ": tensor " + shape_string(t->shape()) +
                                  " is not on the GPU");
}

}  // namespace

void CudaBackend::conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h,
                         int pad_w) {
  require_device("conv3d", {&out, &in, &weight, bias});
  video_checks::conv3d("cuda", out, in, weight, bias, pad_h, pad_w);
  convolve(out, nullptr, in, nullptr, weight, bias, pad_h, pad_w, nullptr, nullptr);
}

void CudaBackend::causal_conv3d(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma,
                                const Tensor& weight, const Tensor* bias, int pad_h, int pad_w,
                                const Tensor* residual, const Tensor* halo_rows) {
  require_device("causal_conv3d", {&out, history, &x, gamma, &weight, bias, residual, halo_rows});
  video_checks::causal_conv3d("cuda", out, history, x, gamma, weight, bias, pad_h, pad_w, residual, halo_rows);
  convolve(out, history, x, gamma, weight, bias, pad_h, pad_w, residual, halo_rows);
}

// Both convolution ops: the implicit GEMM's operands (conv3d_igemm.h), a zero-padded bf16 copy of [history; x]
// (normalised on the way when gamma is given, the halo rows in the H padding when given) and bf16 weights, in the scratch arena for the length of this op
// (stream order keeps them alive until the kernel has read them).
void CudaBackend::convolve(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma,
                           const Tensor& weight, const Tensor* bias, int pad_h, int pad_w, const Tensor* residual,
                           const Tensor* halo_rows) {
  const int64_t hf = history ? history->dim(0) : 0, ti = hf + x.dim(0), hi = x.dim(1), wi = x.dim(2), ci = x.dim(3);
  const int64_t co = weight.dim(0), kt = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  const Arena::Scope scope(arena());
  const int64_t cp = cuda::conv_padded_in_channels(ci), cop = cuda::conv_padded_out_channels(co);
  const int64_t hp = hi + 2 * pad_h, wp = wi + 2 * pad_w, taps = kt * kh * kw;
  Tensor padded = scratch({ti, hp, wp, cp}, DType::bf16);
  Tensor packed = scratch({cop, taps, cp}, DType::bf16);
  cuda::conv_pack_input(padded.data(), history ? history->ptr<float>() : nullptr, hf, x.ptr<float>(), x.dim(0),
                        gamma ? gamma->ptr<float>() : nullptr, halo_rows ? halo_rows->ptr<float>() : nullptr, hi,
                        wi, ci, cp, pad_h, pad_w, stream());
  cuda::conv_pack_weight(packed.data(), weight.ptr<float>(), co, taps, ci, cop, cp, stream());
  const int64_t split_floats = cuda::conv3d_igemm_workspace_floats(ti, hp, wp, cp, co, kt, kh, kw);
  Tensor split_sums = split_floats > 0 ? scratch({split_floats}, DType::f32) : Tensor();
  cuda::conv3d_igemm(out.ptr<float>(), padded.data(), packed.data(), bias ? bias->ptr<float>() : nullptr,
                     residual ? residual->ptr<float>() : nullptr, ti, hp, wp, cp, co, cop, kt, kh, kw,
                     split_floats > 0 ? split_sums.ptr<float>() : nullptr, stream());
}

void CudaBackend::vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) {
  require_device("vae_rms_norm", {&out, &x, &gamma});
  video_checks::vae_rms_norm("cuda", out, x, gamma);
  cuda::vae_rms_norm(out.ptr<float>(), x.ptr<float>(), gamma.ptr<float>(), x.rows(), x.dim(-1), then_silu, stream());
}

void CudaBackend::upsample_nearest2x(Tensor& out, const Tensor& in) {
  require_device("upsample_nearest2x", {&out, &in});
  const auto s = video_checks::upsample_nearest2x("cuda", out, in);
  cuda::upsample_nearest2x(out.ptr<float>(), in.ptr<float>(), s.t, s.h, s.w, s.c, stream());
}

void CudaBackend::channels_to_frames(Tensor& out, const Tensor& in, int factor) {
  require_device("channels_to_frames", {&out, &in});
  const auto s = video_checks::channels_to_frames("cuda", out, in, factor);
  cuda::channels_to_frames(out.ptr<float>(), in.ptr<float>(), s.t, s.h, s.w, s.c, factor, stream());
}

void CudaBackend::latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) {
  require_device("latent_to_channels_last", {&out, &in, &scale, &shift});
  const auto s = video_checks::latent_to_channels_last("cuda", out, in, scale, shift);
  cuda::latent_to_channels_last(out.ptr<float>(), in.ptr<float>(), scale.ptr<float>(), shift.ptr<float>(), s.c, s.t,
                                s.h, s.w, stream());
}

void CudaBackend::frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) {
  require_device("frames_to_planar", {&out, &in});
  const auto s = video_checks::frames_to_planar("cuda", out, in);
  cuda::frames_to_planar(out.ptr<float>(), in.ptr<float>(), s.t, s.h, s.w, s.c, lo, hi, stream());
}

}  // namespace ditrun

// The video ops of the CPU backend (the Wan-VAE decoder, spec §4): 3-D convolution as im2col + the fp32 GEMM,
// the VAE's RMS_norm, and the layout moves around them. Channels-last [T, H, W, C] throughout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/cpu/cpu_backend.h"

namespace ditrun {

namespace {

[[noreturn]] void invalid(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("cpu ") + op + ": " + what);
}

void require_f32(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t && t->dtype() != DType::f32)
      invalid(op, "expected f32, got " + std::string(dtype_name(t->dtype())) + " " + shape_string(t->shape()));
}

void require_rank(const char* op, const Tensor& t, int rank, const char* what) {
  if (t.rank() != rank) invalid(op, std::string(what) + " " + shape_string(t.shape()) + " is not " +
                                        std::to_string(rank) + "-D");
}

// Patch rows per GEMM: about this many floats of im2col buffer (16 MiB).
constexpr int64_t kIm2colFloats = int64_t{4} << 20;
constexpr int64_t kParallelElements = int64_t{1} << 16;

}  // namespace

void CpuBackend::conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h,
                        int pad_w) {
  require_f32("conv3d", {&out, &in, &weight, bias});
  require_rank("conv3d", in, 4, "in");
  require_rank("conv3d", weight, 5, "weight");
  const int64_t ti = in.dim(0), hi = in.dim(1), wi = in.dim(2), ci = in.dim(3);
  const int64_t co = weight.dim(0), kt = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  const int64_t to = ti - kt + 1, ho = hi + 2 * pad_h - kh + 1, wo = wi + 2 * pad_w - kw + 1;
  if (weight.dim(4) != ci || to < 1 || ho < 1 || wo < 1 || pad_h < 0 || pad_w < 0 || out.shape() != Shape{to, ho, wo, co} ||
      (bias && bias->numel() != co))
    invalid("conv3d", "in " + shape_string(in.shape()) + " weight " + shape_string(weight.shape()) + " pad " +
                          std::to_string(pad_h) + "," + std::to_string(pad_w) + " out " + shape_string(out.shape()));
  // im2col over whole output rows, then out[pixels, Co] = patches[pixels, K]·weight[Co, K]ᵀ: the tap order
  // (a, b, c, i) of a patch row is the weight's [kt, kh, kw, Ci] order.
  const int64_t k = kt * kh * kw * ci;
  const int64_t rows_total = to * ho;
  const int64_t rows_per_chunk = std::clamp<int64_t>(kIm2colFloats / std::max<int64_t>(wo * k, 1), 1, rows_total);
  std::vector<float> patches(static_cast<size_t>(rows_per_chunk * wo * k));
  const float* x = in.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t first = 0; first < rows_total; first += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, rows_total - first);
#pragma omp parallel for schedule(static) if (rows * wo * k > kParallelElements)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = (first + r) / ho, y = (first + r) % ho;
      for (int64_t xo = 0; xo < wo; ++xo) {
        float* p = patches.data() + (r * wo + xo) * k;
        for (int64_t a = 0; a < kt; ++a)
          for (int64_t b = 0; b < kh; ++b) {
            const int64_t ys = y + b - pad_h;
            for (int64_t c = 0; c < kw; ++c, p += ci) {
              const int64_t xs = xo + c - pad_w;
              if (ys < 0 || ys >= hi || xs < 0 || xs >= wi)
                std::fill(p, p + ci, 0.f);
              else
                std::memcpy(p, x + (((t + a) * hi + ys) * wi + xs) * ci, static_cast<size_t>(ci) * sizeof(float));
            }
          }
      }
    }
    cpu_gemm_xwt(o + first * wo * co, patches.data(), weight.ptr<float>(), bias ? bias->ptr<float>() : nullptr,
                 rows * wo, co, k);
  }
}

void CpuBackend::vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) {
  require_f32("vae_rms_norm", {&out, &x, &gamma});
  const int64_t d = x.dim(-1), rows = x.rows();
  if (out.numel() != x.numel() || gamma.numel() != d)
    invalid("vae_rms_norm", "x " + shape_string(x.shape()) + " gamma " + shape_string(gamma.shape()) + " out " +
                                shape_string(out.shape()));
  const float* xs = x.ptr<float>();
  const float* g = gamma.ptr<float>();
  float* o = out.ptr<float>();
  const float scale = std::sqrt(static_cast<float>(d));
#pragma omp parallel for schedule(static) if (rows * d > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xs[r * d + i]) * xs[r * d + i];
    const float norm = std::max(static_cast<float>(std::sqrt(ss)), 1e-12f);
    for (int64_t i = 0; i < d; ++i) {
      const float y = xs[r * d + i] / norm * scale * g[i];
      o[r * d + i] = then_silu ? y / (1.f + std::exp(-y)) : y;
    }
  }
}

void CpuBackend::upsample_nearest2x(Tensor& out, const Tensor& in) {
  require_f32("upsample_nearest2x", {&out, &in});
  require_rank("upsample_nearest2x", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2), c = in.dim(3);
  if (out.shape() != Shape{t, 2 * h, 2 * w, c})
    invalid("upsample_nearest2x", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  const float* x = in.ptr<float>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) if (out.numel() > kParallelElements)
  for (int64_t row = 0; row < t * 2 * h; ++row) {
    const int64_t f = row / (2 * h), y = row % (2 * h);
    const float* src = x + (f * h + y / 2) * w * c;
    float* dst = o + row * 2 * w * c;
    for (int64_t xo = 0; xo < 2 * w; ++xo)
      std::memcpy(dst + xo * c, src + (xo / 2) * c, static_cast<size_t>(c) * sizeof(float));
  }
}

void CpuBackend::channels_to_frames(Tensor& out, const Tensor& in, int factor) {
  require_f32("channels_to_frames", {&out, &in});
  require_rank("channels_to_frames", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2);
  const int64_t c = factor > 0 ? in.dim(3) / factor : 0;
  if (factor < 1 || c * factor != in.dim(3) || out.shape() != Shape{factor * t, h, w, c})
    invalid("channels_to_frames", "in " + shape_string(in.shape()) + " factor " + std::to_string(factor) + " out " +
                                      shape_string(out.shape()));
  const float* x = in.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t pixels = h * w;
  for (int64_t f = 0; f < t; ++f)
    for (int64_t s = 0; s < factor; ++s)
      for (int64_t p = 0; p < pixels; ++p)
        std::memcpy(o + ((f * factor + s) * pixels + p) * c, x + (f * pixels + p) * factor * c + s * c,
                    static_cast<size_t>(c) * sizeof(float));
}

void CpuBackend::latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) {
  require_f32("latent_to_channels_last", {&out, &in, &scale, &shift});
  require_rank("latent_to_channels_last", in, 4, "in");
  const int64_t c = in.dim(0), t = in.dim(1), h = in.dim(2), w = in.dim(3);
  if (out.shape() != Shape{t, h, w, c} || scale.numel() != c || shift.numel() != c)
    invalid("latent_to_channels_last", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()) +
                                           " scale " + shape_string(scale.shape()) + " shift " +
                                           shape_string(shift.shape()));
  const float* x = in.ptr<float>();
  const float* sc = scale.ptr<float>();
  const float* sh = shift.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t positions = t * h * w;
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t ch = 0; ch < c; ++ch) o[p * c + ch] = x[ch * positions + p] * sc[ch] + sh[ch];
}

void CpuBackend::frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) {
  require_f32("frames_to_planar", {&out, &in});
  require_rank("frames_to_planar", in, 4, "in");
  const int64_t t = in.dim(0), h = in.dim(1), w = in.dim(2), c = in.dim(3);
  if (out.shape() != Shape{t, c, h, w})
    invalid("frames_to_planar", "in " + shape_string(in.shape()) + " out " + shape_string(out.shape()));
  const float* x = in.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t pixels = h * w;
  for (int64_t f = 0; f < t; ++f)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < pixels; ++p)
        o[(f * c + ch) * pixels + p] = std::clamp(x[(f * pixels + p) * c + ch], lo, hi);
}

}  // namespace ditrun

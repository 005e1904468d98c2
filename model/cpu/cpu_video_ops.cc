// The video ops of the CPU backend (the Wan-VAE decoder, spec §4): 3-D convolution as im2col + the fp32 GEMM,
// the VAE's RMS_norm, and the layout moves around them. Channels-last [T, H, W, C] throughout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/core/video_op_checks.h"
#include "model/cpu/cpu_backend.h"

namespace ditrun {

namespace {

// Patch rows per GEMM: about this many floats of im2col buffer (16 MiB).
constexpr int64_t kIm2colFloats = int64_t{4} << 20;
constexpr int64_t kParallelElements = int64_t{1} << 16;

}  // namespace

void CpuBackend::conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h,
                        int pad_w) {
  const auto s = video_checks::conv3d("cpu", out, in, weight, bias, pad_h, pad_w);
  const int64_t ti = s.ti, hi = s.hi, wi = s.wi, ci = s.ci, co = s.co, kt = s.kt, kh = s.kh, kw = s.kw;
  const int64_t to = ti - kt + 1, ho = hi + 2 * pad_h - kh + 1, wo = wi + 2 * pad_w - kw + 1;
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
  video_checks::vae_rms_norm("cpu", out, x, gamma);
  const int64_t d = x.dim(-1), rows = x.rows();
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
  const auto [t, h, w, c] = video_checks::upsample_nearest2x("cpu", out, in);
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
  const auto [t, h, w, c] = video_checks::channels_to_frames("cpu", out, in, factor);
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
  const auto [t, h, w, c] = video_checks::latent_to_channels_last("cpu", out, in, scale, shift);
  const float* x = in.ptr<float>();
  const float* sc = scale.ptr<float>();
  const float* sh = shift.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t positions = t * h * w;
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t ch = 0; ch < c; ++ch) o[p * c + ch] = x[ch * positions + p] * sc[ch] + sh[ch];
}

void CpuBackend::frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) {
  const auto [t, h, w, c] = video_checks::frames_to_planar("cpu", out, in);
  const float* x = in.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t pixels = h * w;
  for (int64_t f = 0; f < t; ++f)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < pixels; ++p)
        o[(f * c + ch) * pixels + p] = std::clamp(x[(f * pixels + p) * c + ch], lo, hi);
}

}  // namespace ditrun

// Video kernels of the Wan-VAE decoder (spec §4), written for correctness first: one thread per output element,
// fp32 accumulation, formulas in the order of the CPU reference (model/cpu/cpu_video_ops.cc).
#include "model/cuda/video_ops.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/kernel_util.cuh"

namespace ditrun::cuda {

namespace {

using namespace kernel;  // conversions, grid, dtype dispatch, launch check

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One thread per output (t, y, x, o); o varies fastest, so a warp shares its input pixels (broadcast reads).
__global__ void conv3d_kernel(float* out, const float* in, const float* weight, const float* bias, int64_t hi,
                              int64_t wi, int64_t ci, int64_t co, int64_t kt, int64_t kh, int64_t kw, int64_t pad_h,
                              int64_t pad_w, int64_t ho, int64_t wo, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t o = i % co, pixel = i / co;
    const int64_t x = pixel % wo, y = (pixel / wo) % ho, t = pixel / (wo * ho);
    float acc = bias ? bias[o] : 0.f;
    for (int64_t a = 0; a < kt; ++a)
      for (int64_t b = 0; b < kh; ++b) {
        const int64_t ys = y + b - pad_h;
        if (ys < 0 || ys >= hi) continue;
        for (int64_t c = 0; c < kw; ++c) {
          const int64_t xs = x + c - pad_w;
          if (xs < 0 || xs >= wi) continue;
          const float* src = in + (((t + a) * hi + ys) * wi + xs) * ci;
          const float* w = weight + (((o * kt + a) * kh + b) * kw + c) * ci;
          for (int64_t j = 0; j < ci; ++j) acc += w[j] * src[j];
        }
      }
    out[i] = acc;
  }
}

// One block per row: sum of squares over the block, then the scaled, optionally SiLU'd row. Each thread writes
// only the elements it read, after the reduction's barriers: in place is safe.
__global__ void vae_rms_norm_kernel(float* out, const float* x, const float* gamma, int64_t d, bool then_silu) {
  __shared__ float partial[32];
  __shared__ float total;
  const float* xr = x + blockIdx.x * d;
  float* orow = out + blockIdx.x * d;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += xr[i] * xr[i];
  s = warp_sum(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = s;
  __syncthreads();
  if (warp == 0) {
    float v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.f;
    v = warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const float norm = fmaxf(sqrtf(total), 1e-12f);
  const float scale = sqrtf(static_cast<float>(d));
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float y = xr[i] / norm * scale * gamma[i];
    orow[i] = then_silu ? y / (1.f + expf(-y)) : y;
  }
}

__global__ void upsample_nearest2x_kernel(float* out, const float* in, int64_t h, int64_t w, int64_t c, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t ch = i % c, x = (i / c) % (2 * w), y = (i / (c * 2 * w)) % (2 * h), t = i / (c * 4 * w * h);
    out[i] = in[((t * h + y / 2) * w + x / 2) * c + ch];
  }
}

__global__ void channels_to_frames_kernel(float* out, const float* in, int64_t pixels, int64_t c, int64_t factor,
                                          int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t ch = i % c, p = (i / c) % pixels, frame = i / (c * pixels);
    const int64_t t = frame / factor, s = frame % factor;
    out[i] = in[(t * pixels + p) * factor * c + s * c + ch];
  }
}

__global__ void latent_to_channels_last_kernel(float* out, const float* in, const float* scale, const float* shift,
                                               int64_t c, int64_t positions, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t ch = i % c, p = i / c;
    out[i] = in[ch * positions + p] * scale[ch] + shift[ch];
  }
}

__global__ void frames_to_planar_kernel(float* out, const float* in, int64_t pixels, int64_t c, float lo, float hi,
                                        int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t p = i % pixels, ch = (i / pixels) % c, t = i / (pixels * c);
    out[i] = fminf(fmaxf(in[(t * pixels + p) * c + ch], lo), hi);
  }
}

// One warp per (query, head); lane l holds elements l, l + 32, ... of q and of the output accumulator.
template <int kPerLane>
__global__ void attention_f32_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                                     int64_t lq, int64_t keys, int heads, int d, float scale) {
  const int64_t warp_id = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (warp_id >= lq * heads) return;  // whole warps leave together
  const int64_t row = warp_id / heads;
  const int head = static_cast<int>(warp_id % heads);
  const int64_t stride = static_cast<int64_t>(heads) * d;
  float qr[kPerLane], acc[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    qr[j] = e < d ? q[row * stride + head * d + e] : 0.f;
    acc[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t key = 0; key < keys; ++key) {
    const float* kr = k + key * stride + head * d;
    const float* vr = v + key * stride + head * d;
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane + 32 * j;
      if (e < d) s += qr[j] * kr[e];
    }
    s = warp_sum(s) * scale;
    const float m_new = fmaxf(m, s);
    const float correction = expf(m - m_new), p = expf(s - m_new);
    l = l * correction + p;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane + 32 * j;
      acc[j] = acc[j] * correction + (e < d ? p * vr[e] : 0.f);
    }
    m = m_new;
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    if (e < d) out[row * stride + head * d + e] = keys > 0 ? acc[j] / l : 0.f;
  }
  if (lse && lane == 0) lse[static_cast<int64_t>(head) * lq + row] = keys > 0 ? m + logf(l) : -INFINITY;
}

}  // namespace

void conv3d(float* out, const float* in, const float* weight, const float* bias, int64_t ti, int64_t hi, int64_t wi,
            int64_t ci, int64_t co, int64_t kt, int64_t kh, int64_t kw, int64_t pad_h, int64_t pad_w,
            cudaStream_t stream) {
  const int64_t to = ti - kt + 1, ho = hi + 2 * pad_h - kh + 1, wo = wi + 2 * pad_w - kw + 1;
  const int64_t n = to * ho * wo * co;
  if (n <= 0) return;
  conv3d_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, weight, bias, hi, wi, ci, co, kt, kh, kw, pad_h,
                                                         pad_w, ho, wo, n);
  check_launch();
}

void vae_rms_norm(float* out, const float* x, const float* gamma, int64_t rows, int64_t d, bool then_silu,
                  cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  if (rows > INT_MAX) throw std::invalid_argument("cuda vae_rms_norm: too many rows");
  const int threads = static_cast<int>(std::clamp<int64_t>((d + 31) / 32 * 32, 32, kThreads));
  vae_rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(out, x, gamma, d, then_silu);
  check_launch();
}

void upsample_nearest2x(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c,
                        cudaStream_t stream) {
  const int64_t n = t * 4 * h * w * c;
  if (n == 0) return;
  upsample_nearest2x_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, h, w, c, n);
  check_launch();
}

void channels_to_frames(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c, int64_t factor,
                        cudaStream_t stream) {
  const int64_t n = factor * t * h * w * c;
  if (n == 0) return;
  channels_to_frames_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, h * w, c, factor, n);
  check_launch();
}

void latent_to_channels_last(float* out, const float* in, const float* scale, const float* shift, int64_t c,
                             int64_t t, int64_t h, int64_t w, cudaStream_t stream) {
  const int64_t n = c * t * h * w;
  if (n == 0) return;
  latent_to_channels_last_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, scale, shift, c, t * h * w, n);
  check_launch();
}

void frames_to_planar(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c, float lo, float hi,
                      cudaStream_t stream) {
  const int64_t n = t * h * w * c;
  if (n == 0) return;
  frames_to_planar_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, h * w, c, lo, hi, n);
  check_launch();
}

void attention_f32(float* out, float* lse, const float* q, const float* k, const float* v, int64_t lq, int64_t lk,
                   int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream) {
  if (d < 1 || d > kMaxAttentionF32Dim)
    throw std::invalid_argument("cuda attention: f32 head_dim " + std::to_string(d) + " (1 to " +
                                std::to_string(kMaxAttentionF32Dim) + ")");
  const int64_t keys = std::clamp<int64_t>(kv_valid, 0, lk);
  const int64_t warps = lq * heads;
  if (warps == 0) return;
  const int64_t blocks = (warps * 32 + kThreads - 1) / kThreads;
  if (blocks > INT_MAX) throw std::invalid_argument("cuda attention: too many query rows");
  const auto grid = static_cast<unsigned>(blocks);
  if (d <= 32)
    attention_f32_kernel<1><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, lq, keys, heads, d, scale);
  else if (d <= 64)
    attention_f32_kernel<2><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, lq, keys, heads, d, scale);
  else if (d <= 128)
    attention_f32_kernel<4><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, lq, keys, heads, d, scale);
  else if (d <= 256)
    attention_f32_kernel<8><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, lq, keys, heads, d, scale);
  else
    attention_f32_kernel<16><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, lq, keys, heads, d, scale);
  check_launch();
}

}  // namespace ditrun::cuda

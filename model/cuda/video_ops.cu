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

// One warp per row (rows are the pixels, d their channels: 96-384 in the VAE): the sum of squares with a warp
// reduction, then the scaled, optionally SiLU'd row. Each lane writes only the elements it read: in place is safe.
constexpr int kNormRowsPerBlock = kThreads / 32;
__global__ void vae_rms_norm_kernel(float* out, const float* x, const float* gamma, int64_t rows, int64_t d,
                                    bool then_silu) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kNormRowsPerBlock) + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  const float* xr = x + row * d;
  float* orow = out + row * d;
  const bool vec = (d & 3) == 0;  // rows of 4-float groups: 16-byte accesses
  float s = 0.f;
  if (vec) {
    for (int64_t i = lane; i < d / 4; i += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[i];
      s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int64_t i = lane; i < d; i += 32) s += xr[i] * xr[i];
  }
  s = warp_sum(s);
  const float factor = sqrtf(static_cast<float>(d)) / fmaxf(sqrtf(s), 1e-12f);
  auto finish = [&](float v, float g) {
    const float y = v * factor * g;
    return then_silu ? y / (1.f + expf(-y)) : y;
  };
  if (vec) {
    for (int64_t i = lane; i < d / 4; i += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[i], g = reinterpret_cast<const float4*>(gamma)[i];
      reinterpret_cast<float4*>(orow)[i] = make_float4(finish(v.x, g.x), finish(v.y, g.y), finish(v.z, g.z),
                                                       finish(v.w, g.w));
    }
  } else {
    for (int64_t i = lane; i < d; i += 32) orow[i] = finish(xr[i], gamma[i]);
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

// One warp per row of scores: softmax of scale·s in place, and the row's natural log-sum-exp when lse is given.
__global__ void softmax_rows_kernel(float* s, float* lse, int64_t rows, int64_t n, float scale) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kNormRowsPerBlock) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float* r = s + row * n;
  float m = -INFINITY;
  for (int64_t i = lane; i < n; i += 32) m = fmaxf(m, r[i] * scale);
  for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  float sum = 0.f;
  for (int64_t i = lane; i < n; i += 32) {
    const float e = expf(r[i] * scale - m);
    r[i] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv = 1.f / sum;
  for (int64_t i = lane; i < n; i += 32) r[i] *= inv;
  if (lse && lane == 0) lse[row] = m + logf(sum);
}

// [rows, cols] -> [cols, rows] through a 32×32 shared tile (coalesced on both sides).
__global__ void transpose_kernel(float* out, const float* in, int64_t rows, int64_t cols) {
  __shared__ float tile[32][33];
  const int64_t r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][i];
  }
}

}  // namespace

void vae_rms_norm(float* out, const float* x, const float* gamma, int64_t rows, int64_t d, bool then_silu,
                  cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  const int64_t blocks = (rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
  if (blocks > INT_MAX) throw std::invalid_argument("cuda vae_rms_norm: too many rows");
  vae_rms_norm_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, x, gamma, rows, d, then_silu);
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

void softmax_rows(float* s, float* lse, int64_t rows, int64_t n, float scale, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t blocks = (rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
  if (blocks > INT_MAX) throw std::invalid_argument("cuda softmax_rows: too many rows");
  softmax_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(s, lse, rows, n, scale);
  check_launch();
}

void transpose(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  if ((rows + 31) / 32 > 65535) throw std::invalid_argument("cuda transpose: too many rows");
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32));
  transpose_kernel<<<grid, dim3(32, 8), 0, stream>>>(out, in, rows, cols);
  check_launch();
}

}  // namespace ditrun::cuda

// Host launchers of the CUDA video kernels of the Wan-VAE decoder (video_ops.cu, spec §4). Simple, correct
// kernels: one thread per output element with fp32 accumulation, f32 storage. The tensor-core implicit GEMM for
// the 3×3×3 convolutions replaces conv3d later. Raw device pointers, channels-last [T, H, W, C] contiguous data;
// every launch on `stream` and checked; shape checks are the caller's (CudaBackend).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ditrun::cuda {

// Backend::conv3d: in [ti,hi,wi,ci], weight [co,kt,kh,kw,ci], bias [co] or null -> out [ti−kt+1, hi+2ph−kh+1,
// wi+2pw−kw+1, co].
void conv3d(float* out, const float* in, const float* weight, const float* bias, int64_t ti, int64_t hi, int64_t wi,
            int64_t ci, int64_t co, int64_t kt, int64_t kh, int64_t kw, int64_t pad_h, int64_t pad_w,
            cudaStream_t stream);

// Backend::vae_rms_norm over rows of d: x / max(‖x‖₂, 1e-12)·sqrt(d)·gamma, then SiLU when then_silu; out may
// alias x.
void vae_rms_norm(float* out, const float* x, const float* gamma, int64_t rows, int64_t d, bool then_silu,
                  cudaStream_t stream);

// [t,h,w,c] -> [t,2h,2w,c], nearest.
void upsample_nearest2x(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c,
                        cudaStream_t stream);

// [t,h,w,factor·c] -> [factor·t,h,w,c], out[factor·f + s, y, x, ch] = in[f, y, x, s·c + ch].
void channels_to_frames(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c, int64_t factor,
                        cudaStream_t stream);

// [c,t,h,w] -> [t,h,w,c] with out = in·scale[ch] + shift[ch].
void latent_to_channels_last(float* out, const float* in, const float* scale, const float* shift, int64_t c,
                             int64_t t, int64_t h, int64_t w, cudaStream_t stream);

// [t,h,w,c] -> [t,c,h,w] clamped to [lo, hi].
void frames_to_planar(float* out, const float* in, int64_t t, int64_t h, int64_t w, int64_t c, float lo, float hi,
                      cudaStream_t stream);

// Attention in f32 for any head width d ≤ kMaxAttentionF32Dim (the VAE's single head of width C): one warp per
// (query, head), online softmax in fp32. q [lq,heads,d], k/v [lk,heads,d], out like q, lse [heads,lq] or null.
constexpr int kMaxAttentionF32Dim = 512;
void attention_f32(float* out, float* lse, const float* q, const float* k, const float* v, int64_t lq, int64_t lk,
                   int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream);

}  // namespace ditrun::cuda

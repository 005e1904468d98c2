// Host launchers of the CUDA video kernels of the Wan-VAE decoder (video_ops.cu, spec §4) besides the
// convolutions (conv3d_igemm.h): the memory-bound steps between them, f32 storage. Raw device pointers,
// channels-last [T, H, W, C] contiguous data; every launch on `stream` and checked; shape checks are the caller's
// (CudaBackend).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ditrun::cuda {

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

// The VAE's wide single head goes through fp32 GEMMs (CudaBackend::attention): these are the steps between them.
// s [rows, n] f32 in place -> softmax(scale·s) per row; lse [rows] (natural log of Σ exp(scale·s)) or null.
void softmax_rows(float* s, float* lse, int64_t rows, int64_t n, float scale, cudaStream_t stream);
// in [rows, cols] -> out [cols, rows].
void transpose(float* out, const float* in, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace ditrun::cuda

// Host launchers of the CUDA element-wise and row-norm kernels (elementwise.cu). Raw device pointers, contiguous
// row-major data, every launch on `stream` and checked. Storage dtypes are f32 or bf16; math is fp32. They throw
// std::invalid_argument for other dtypes; shape checks are the caller's (CudaBackend).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "model/core/dtype.h"

namespace ditrun::cuda {

constexpr int kMaxLincombInputs = 6;

// dst[i] = src[i] converted (f32 <-> bf16, or same dtype).
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, cudaStream_t stream);

// Per row of x [rows, d]: y = (x − mean)·rsqrt(var + eps), var = mean((x − mean)²); then y·weight + bias (each
// optional), then y·(1 + scale) + shift when scale is given (spec §1.4). weight/bias/shift/scale: f32 [d] or null.
void layer_norm(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t rows, int64_t d,
                const float* weight, const float* bias, const float* shift, const float* scale, float eps,
                cudaStream_t stream);

// Per row: out = x·rsqrt(mean(x²) + eps)·weight (weight f32 [d]). out may alias x (same dtype).
void rms_norm(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t rows, int64_t d, const float* weight,
              float eps, cudaStream_t stream);

// x [rows, heads, d] in place: pair k of row t rotated by cos/sin[t, k] (f32 [rows, d/2]), interleaved pairs.
void rope(void* x, DType dtype, int64_t rows, int64_t heads, int64_t d, const float* cos, const float* sin,
          cudaStream_t stream);

// x [rows, heads, head_dim] in place: rms_norm over each row of heads·head_dim (weight f32 [heads·head_dim]), the
// result rounded to dtype, then rope on rows [0, rope_rows) (cos/sin f32 [rope_rows, head_dim/2]). One kernel
// (one block per row, one read and one write of x) when rows take 16-byte packs and head_dim is even, else the two
// kernels above; the same bits either way.
void rms_norm_rope(void* x, DType dtype, int64_t rows, int64_t heads, int64_t head_dim, const float* weight,
                   float eps, const float* cos, const float* sin, int64_t rope_rows, cudaStream_t stream);

// x[rows, d] += y[rows, d]·gate[d]; gate null means 1 (plain add).
void add_gated(float* x, const void* y, DType y_dtype, const float* gate, int64_t rows, int64_t d,
               cudaStream_t stream);

// x[rows, d] += y·gate (gate null: 1), then out = layer_norm of the new x as above (weight/bias or shift/scale):
// one kernel reading x once (one block per row) where add_gated and layer_norm would pass over it twice; the
// same bits as the two (a y without 16-byte-pack alignment runs the two).
void add_layer_norm(float* x, const void* y, DType y_dtype, const float* gate, void* out, DType out_dtype,
                    int64_t rows, int64_t d, const float* weight, const float* bias, const float* shift,
                    const float* scale, float eps, cudaStream_t stream);

// out[i] = mean + std_dev·philox_normal(seed, stream_id, i), rounded once to out_dtype (model/core/philox.h).
void fill_normal(void* out, DType out_dtype, int64_t n, uint64_t seed, uint64_t stream_id, float mean, float std_dev,
                 cudaStream_t stream);

// out = x·sigmoid(x).
void silu(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t n, cudaStream_t stream);

// out = Σ coeffs[i]·inputs[i], count ≤ kMaxLincombInputs (0 writes zeros); out may alias an input.
void lincomb(float* out, const float* const* inputs, const float* coeffs, int count, int64_t n, cudaStream_t stream);

// latent f32 [c, f, h, w] -> tokens [f·(h/2)·(w/2), 4c], feature (ci, kh, kw) = ci·4 + kh·2 + kw (spec §1.2).
void patchify(void* tokens, DType tokens_dtype, const float* latent, int64_t c, int64_t f, int64_t h, int64_t w,
              cudaStream_t stream);
// tokens [≥ f·(h/2)·(w/2), 4c], feature (kh·2 + kw)·c + ci -> latent f32 [c, f, h, w] (odd edges left untouched).
void unpatchify(float* latent, const void* tokens, DType tokens_dtype, int64_t c, int64_t f, int64_t h, int64_t w,
                cudaStream_t stream);

// Ring-attention merge (see Backend::attention_merge): acc f32 [lq, heads, d], part of part_dtype, lse f32 [heads, lq].
void attention_merge(float* acc, float* lse_acc, const void* part, DType part_dtype, const float* lse_part, int64_t lq,
                     int64_t heads, int64_t d, cudaStream_t stream);

}  // namespace ditrun::cuda

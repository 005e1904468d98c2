// Host launchers of the CUDA kernels of the umT5 text encoder (text_ops.cu, spec §5.1). Simple, correct kernels
// with fp32 math; f32 or bf16 storage (DType picks). Raw device pointers; ids / bucket tables are device arrays the
// caller (CudaBackend, cuda_text_ops.cc) has copied; every launch on `stream` and checked; shape checks are the
// caller's.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "model/core/dtype.h"

namespace ditrun::cuda {

// out[i, :] = table[ids[i], :] for n ids, rows of d.
void embedding(void* out, DType out_dtype, const void* table, DType table_dtype, const int32_t* ids, int64_t n,
               int64_t d, cudaStream_t stream);

// bias[h, i, j] = table[bucket_of_offset[j − i + lq − 1] · heads + h], f32.
void relative_position_bias(float* bias, const float* table, const int32_t* bucket_of_offset, int64_t heads,
                            int64_t lq, int64_t lk, cudaStream_t stream);

// One block per (query, head): scores = scale·q·k + bias over keys [0, kv_valid) in shared memory, fp32 softmax,
// out = Σ p·v. q [lq,heads,d], k/v [lk,heads,d] in `qkv_dtype`, bias f32 [heads,lq,lk], out [lq,heads,d].
void attention_biased(void* out, DType out_dtype, const void* q, const void* k, const void* v, DType qkv_dtype,
                      const float* bias, int64_t lq, int64_t lk, int64_t kv_valid, int64_t heads, int64_t d,
                      float scale, cudaStream_t stream);
// Most keys attention_biased takes (its scores live in shared memory).
constexpr int64_t kMaxAttentionBiasedKeys = 8192;

// x[i] *= y[i].
void multiply(void* x, DType x_dtype, const void* y, DType y_dtype, int64_t n, cudaStream_t stream);

}  // namespace ditrun::cuda

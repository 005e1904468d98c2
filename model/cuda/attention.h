// Attention on the GPU (bf16 q/k/v/out, fp32 softmax and log-sum-exp): a FlashAttention-2-style kernel with
// mma.sync tensor-core tiles and online softmax. CudaBackend::attention takes head dim 128 (every Wan2.1 DiT) to
// the Hopper kernel (attention_sm90.h); this one serves the other widths (the tiny model) and unaligned operands.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ditrun::cuda {

// q [lq, heads, d], k/v [lk, heads, d] (bf16, contiguous), out [lq, heads, d] bf16, lse [heads, lq] f32 or null.
// Keys at index ≥ kv_valid are ignored. d ∈ {32, 64, 128}. Throws std::invalid_argument for other d.
void attention_bf16(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq, int64_t lk,
                    int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream);

}  // namespace ditrun::cuda

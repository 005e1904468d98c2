// Attention on Hopper (sm_90a) in the style of FlashAttention-3: TMA loads into a two-stage shared-memory pipeline
// with mbarriers, wgmma for Q·Kᵀ and P·V, one producer warp and two consumer warp groups (64 query rows each) with
// register reallocation (setmaxnreg), online softmax in fp32 (exp2, the scale folded in), a persistent grid.
// bf16 in and out, fp32 log-sum-exp; head dim 128, non-causal.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ditrun::cuda {

// Same contract as attention_bf16 (model/cuda/attention.h): q [lq, heads, d], k/v [lk, heads, d] bf16 contiguous,
// out [lq, heads, d] bf16, lse [heads, lq] f32 (natural log, m·scale + log Σ) or null. Keys at index ≥ kv_valid are
// ignored (and never read). d must be 128 and scale > 0 (std::invalid_argument otherwise); q, k, v must be 16-byte
// aligned. Rows with no valid key (kv_valid ≤ 0) get out = 0 and lse = -inf.
void attention_bf16_sm90(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq, int64_t lk,
                         int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream);

// The same with the knobs the default keeps: out_f32 (optional, [lq, heads, d] f32, the normalised output before
// rounding to bf16, for ring attention's merge of partials; out may then be null) and block_n, the key tile
// (128, 176 or 192; 0 picks one from the key count).
struct AttentionSm90Options {
  float* out_f32 = nullptr;
  int block_n = 0;
};
void attention_bf16_sm90_ex(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq,
                            int64_t lk, int64_t kv_valid, int heads, int d, float scale,
                            const AttentionSm90Options& options, cudaStream_t stream);

// The key tile block_n = 0 picks for this many valid keys.
int attention_sm90_default_block_n(int64_t keys);

}  // namespace ditrun::cuda

// FlashAttention-2-style attention (Dao 2023) with mma.sync m16n8k16 bf16 tensor-core tiles: each warp owns 16
// query rows, the block streams 64-key tiles of K and V through shared memory, and the softmax runs online in
// fp32 (base 2). Fragment layouts are those of the PTX ISA for mma.m16n8k16 (rows g, g+8 and column pairs 2t,
// 2t+1 of a thread with g = lane/4, t = lane%4), which lets S accumulators become P operands without a shuffle.
#include "model/cuda/attention.h"

#include <cuda_bf16.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"

namespace ditrun::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 16;
constexpr int kBlockRows = kWarps * kRowsPerWarp;
constexpr int kKeyTile = 64;

__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t load_pair(const __nv_bfloat16* p) { return *reinterpret_cast<const uint32_t*>(p); }

template <int D>
__global__ void __launch_bounds__(kThreads) flash_attention(__nv_bfloat16* __restrict__ out, float* __restrict__ lse,
                                                            const __nv_bfloat16* __restrict__ q,
                                                            const __nv_bfloat16* __restrict__ k,
                                                            const __nv_bfloat16* __restrict__ v, int64_t lq,
                                                            int64_t keys, int heads, float scale_log2) {
  constexpr int kChunks = D / 16;  // k-steps of S = Q·Kᵀ
  constexpr int kDTiles = D / 8;   // n-tiles of O = P·V
  constexpr int kKStride = D + 8;  // padded rows: fragment loads hit 32 distinct banks
  constexpr int kVtStride = kKeyTile + 8;
  __shared__ __align__(16) __nv_bfloat16 k_tile[kKeyTile * kKStride];
  __shared__ __align__(16) __nv_bfloat16 vt_tile[D * kVtStride];  // V transposed: [d][key]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int head = blockIdx.y;
  const int64_t token_stride = static_cast<int64_t>(heads) * D;
  const int64_t row_base = static_cast<int64_t>(blockIdx.x) * kBlockRows + warp * kRowsPerWarp;
  const int64_t rows[2] = {row_base + g, row_base + g + 8};

  // Q stays in registers as A fragments for the whole key loop.
  uint32_t qa[kChunks][4];
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = rows[r & 1];
      const int col = c * 16 + 2 * t + (r >> 1) * 8;
      qa[c][r] = row < lq ? load_pair(q + row * token_stride + head * D + col) : 0u;
    }

  float o[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.f, 0.f};  // this thread's share of the row sums; the quad adds them up at the end

  for (int64_t k0 = 0; k0 < keys; k0 += kKeyTile) {
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < kKeyTile * D / 8; i += kThreads) {
      const int r = i / (D / 8), cv = i % (D / 8);
      const int64_t key = k0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (key < keys) {
        kv = *reinterpret_cast<const uint4*>(k + key * token_stride + head * D + cv * 8);
        vv = *reinterpret_cast<const uint4*>(v + key * token_stride + head * D + cv * 8);
      }
      *reinterpret_cast<uint4*>(&k_tile[r * kKStride + cv * 8]) = kv;
      const __nv_bfloat16* ve = reinterpret_cast<const __nv_bfloat16*>(&vv);
#pragma unroll
      for (int j = 0; j < 8; ++j) vt_tile[(cv * 8 + j) * kVtStride + r] = ve[j];
    }
    __syncthreads();

    // S = Q·Kᵀ for 64 keys (8 n-tiles of 8), scaled to base-2 logits, masked past the valid keys.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const __nv_bfloat16* kr = &k_tile[(j * 8 + g) * kKStride + c * 16 + 2 * t];
        const uint32_t b[2] = {load_pair(kr), load_pair(kr + 8)};
        mma_16816(s[j], qa[c], b);
      }
    }
    float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k0 + j * 8 + 2 * t + (e & 1);
        s[j][e] = key < keys ? s[j][e] * scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    // Rescale what was accumulated under the old maximum.
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      alpha[r] = exp2f(m_run[r] - mx[r]);
      m_run[r] = mx[r];
      l_run[r] *= alpha[r];
    }
#pragma unroll
    for (int i = 0; i < kDTiles; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }
    // P = exp2(S − m) as bf16 A fragments: n-tiles 2c and 2c+1 form the 16-key chunk c.
    uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float p0 = exp2f(s[j][0] - mx[0]), p1 = exp2f(s[j][1] - mx[0]);
      const float p2 = exp2f(s[j][2] - mx[1]), p3 = exp2f(s[j][3] - mx[1]);
      l_run[0] += p0 + p1;
      l_run[1] += p2 + p3;
      pa[j / 2][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
      pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
    }
    // O += P·V.
#pragma unroll
    for (int i = 0; i < kDTiles; ++i)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const __nv_bfloat16* vr = &vt_tile[(i * 8 + g) * kVtStride + c * 16 + 2 * t];
        const uint32_t b[2] = {load_pair(vr), load_pair(vr + 8)};
        mma_16816(o[i], pa[c], b);
      }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = rows[r];
    if (row >= lq) continue;
    const float inv = l_run[r] > 0.f ? 1.f / l_run[r] : 0.f;
    __nv_bfloat16* orow = out + row * token_stride + head * D;
#pragma unroll
    for (int i = 0; i < kDTiles; ++i)
      *reinterpret_cast<uint32_t*>(orow + i * 8 + 2 * t) = pack_bf16(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    if (lse && t == 0)
      lse[static_cast<int64_t>(head) * lq + row] =
          l_run[r] > 0.f ? m_run[r] * 0.6931471805599453f + logf(l_run[r]) : -INFINITY;
  }
}

}  // namespace

void attention_bf16(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq, int64_t lk,
                    int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream) {
  const int64_t keys = kv_valid < lk ? kv_valid : lk;
  if (lq == 0) return;
  const dim3 grid(static_cast<unsigned>((lq + kBlockRows - 1) / kBlockRows), static_cast<unsigned>(heads));
  const float scale_log2 = scale * 1.4426950408889634f;
  auto* o = static_cast<__nv_bfloat16*>(out);
  const auto* qp = static_cast<const __nv_bfloat16*>(q);
  const auto* kp = static_cast<const __nv_bfloat16*>(k);
  const auto* vp = static_cast<const __nv_bfloat16*>(v);
  switch (d) {
    case 32: flash_attention<32><<<grid, kThreads, 0, stream>>>(o, lse, qp, kp, vp, lq, keys, heads, scale_log2); break;
    case 64: flash_attention<64><<<grid, kThreads, 0, stream>>>(o, lse, qp, kp, vp, lq, keys, heads, scale_log2); break;
    case 128:
      flash_attention<128><<<grid, kThreads, 0, stream>>>(o, lse, qp, kp, vp, lq, keys, heads, scale_log2);
      break;
    default: throw std::invalid_argument("cuda attention: head_dim " + std::to_string(d) + " (32, 64 or 128)");
  }
  DITRUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ditrun::cuda

// CUDA kernels of the umT5 text encoder (spec §5.1): one thread per output element, or one block per (query, head)
// for attention; fp32 math in the order of the CPU reference (model/cpu/cpu_text_ops.cc).
#include "model/cuda/text_ops.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/kernel_util.cuh"

namespace ditrun::cuda {

namespace {

using namespace kernel;  // conversions, grid, dtype dispatch, launch check

constexpr int kAttentionThreads = 128;

template <typename To, typename Tt>
__global__ void embedding_kernel(To* out, const Tt* table, const int32_t* ids, int64_t n, int64_t d) {
  DITRUN_GRID_STRIDE(e, n * d) {
    const int64_t row = e / d, col = e % d;
    out[e] = from_float<To>(to_float(table[static_cast<int64_t>(ids[row]) * d + col]));
  }
}

__global__ void relative_position_bias_kernel(float* bias, const float* table, const int32_t* bucket_of_offset,
                                              int64_t heads, int64_t lq, int64_t lk) {
  DITRUN_GRID_STRIDE(e, heads * lq * lk) {
    const int64_t j = e % lk, i = (e / lk) % lq, h = e / (lk * lq);
    bias[e] = table[static_cast<int64_t>(bucket_of_offset[j - i + lq - 1]) * heads + h];
  }
}

// Block-wide reduction of one float (max or sum) through shared memory.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : (kMax ? -INFINITY : 0.f);
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v, offset);
      v = kMax ? fmaxf(v, other) : v + other;
    }
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  const float result = scratch[0];
  __syncthreads();
  return result;
}

template <typename To, typename T>
__global__ void attention_biased_kernel(To* out, const T* q, const T* k, const T* v, const float* bias, int64_t lq,
                                        int64_t lk, int64_t keys, int64_t heads, int64_t d, float scale) {
  extern __shared__ float p[];  // keys scores, then 32 floats of reduction scratch
  float* scratch = p + keys;
  const int64_t i = blockIdx.x, h = blockIdx.y;
  const T* qi = q + (i * heads + h) * d;
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const T* kj = k + (j * heads + h) * d;
    float s = 0.f;
    for (int64_t t = 0; t < d; ++t) s += to_float(qi[t]) * to_float(kj[t]);
    p[j] = s * scale + bias[(h * lq + i) * lk + j];
    local_max = fmaxf(local_max, p[j]);
  }
  const float mx = block_reduce<true>(local_max, scratch);
  float local_sum = 0.f;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    p[j] = expf(p[j] - mx);
    local_sum += p[j];
  }
  const float sum = block_reduce<false>(local_sum, scratch);  // its __syncthreads also publishes p
  To* oi = out + (i * heads + h) * d;
  for (int64_t t = threadIdx.x; t < d; t += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < keys; ++j) acc += p[j] * to_float(v[(j * heads + h) * d + t]);
    oi[t] = from_float<To>(keys > 0 ? acc / sum : 0.f);
  }
}

template <typename Tx, typename Ty>
__global__ void multiply_kernel(Tx* x, const Ty* y, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) { x[i] = from_float<Tx>(to_float(x[i]) * to_float(y[i])); }
}

}  // namespace

void embedding(void* out, DType out_dtype, const void* table, DType table_dtype, const int32_t* ids, int64_t n,
               int64_t d, cudaStream_t stream) {
  if (n * d == 0) return;
  with_type(out_dtype, "embedding", [&](auto o) {
    with_type(table_dtype, "embedding", [&](auto t) {
      using To = decltype(o);
      using Tt = decltype(t);
      embedding_kernel<To, Tt><<<blocks_for(n * d), kThreads, 0, stream>>>(static_cast<To*>(out),
                                                                          static_cast<const Tt*>(table), ids, n, d);
      check_launch();
    });
  });
}

void relative_position_bias(float* bias, const float* table, const int32_t* bucket_of_offset, int64_t heads,
                            int64_t lq, int64_t lk, cudaStream_t stream) {
  const int64_t n = heads * lq * lk;
  if (n == 0) return;
  relative_position_bias_kernel<<<blocks_for(n), kThreads, 0, stream>>>(bias, table, bucket_of_offset, heads, lq, lk);
  check_launch();
}

void attention_biased(void* out, DType out_dtype, const void* q, const void* k, const void* v, DType qkv_dtype,
                      const float* bias, int64_t lq, int64_t lk, int64_t kv_valid, int64_t heads, int64_t d,
                      float scale, cudaStream_t stream) {
  if (lq == 0 || heads == 0) return;
  const int64_t keys = std::clamp<int64_t>(kv_valid, 0, lk);
  if (keys > kMaxAttentionBiasedKeys || heads > 65535)
    throw std::invalid_argument("cuda attention_biased: " + std::to_string(keys) + " keys / " +
                                std::to_string(heads) + " heads is more than this kernel takes");
  const size_t shared = static_cast<size_t>(keys + 32) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(lq), static_cast<unsigned>(heads));
  with_type(out_dtype, "attention_biased", [&](auto o) {
    with_type(qkv_dtype, "attention_biased", [&](auto t) {
      using To = decltype(o);
      using T = decltype(t);
      // Above the default 48 KiB of dynamic shared memory the kernel must ask for it.
      DITRUN_CUDA_CHECK(cudaFuncSetAttribute(attention_biased_kernel<To, T>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(std::max<size_t>(shared, 48 * 1024))));
      attention_biased_kernel<To, T><<<grid, kAttentionThreads, shared, stream>>>(
          static_cast<To*>(out), static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), bias,
          lq, lk, keys, heads, d, scale);
      check_launch();
    });
  });
}

void multiply(void* x, DType x_dtype, const void* y, DType y_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  with_type(x_dtype, "multiply", [&](auto a) {
    with_type(y_dtype, "multiply", [&](auto b) {
      using Tx = decltype(a);
      using Ty = decltype(b);
      multiply_kernel<Tx, Ty><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Tx*>(x),
                                                                    static_cast<const Ty*>(y), n);
      check_launch();
    });
  });
}

}  // namespace ditrun::cuda

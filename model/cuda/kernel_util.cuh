// What every element-wise kernel file shares: bf16/f32 conversions, the grid-stride loop and its grid, dispatch on
// a storage dtype, and the launch check. Included by .cu files only (device code).
#pragma once
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/core/dtype.h"

namespace ditrun::cuda::kernel {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16_rn(v); }

constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements (at least one block; the cap keeps the grid legal, the loop covers
// the rest).
inline int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

// Calls f(float{}) or f(bf16{}) for a storage dtype; anything else is std::invalid_argument naming the op.
template <typename F>
void with_type(DType t, const char* op, F&& f) {
  if (t == DType::f32)
    f(float{});
  else if (t == DType::bf16)
    f(bf16{});
  else
    throw std::invalid_argument(std::string("cuda ") + op + ": unsupported dtype " + std::string(dtype_name(t)));
}

inline void check_launch() { DITRUN_CUDA_CHECK(cudaGetLastError()); }

}  // namespace ditrun::cuda::kernel

#define DITRUN_GRID_STRIDE(i, n)                                                                       \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n);               \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

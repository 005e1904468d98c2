// Element-wise and row-norm kernels of the CUDA backend: bf16 or f32 storage, fp32 math, formulas in the same
// order as the CPU reference (model/cpu/cpu_backend.cc) so the two differ only by rounding.
#include "model/cuda/elementwise.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "comm/cuda_check.h"
#include "model/cuda/kernel_util.cuh"
#include "model/core/philox.h"

namespace ditrun::cuda {

namespace {

using namespace kernel;  // conversions, grid, dtype dispatch, launch check

// N consecutive elements moved as one access (at most 16 bytes wide; a pack of 8 f32 is two 16-byte accesses).
template <typename T, int N>
struct alignas(sizeof(T) * N < 16 ? sizeof(T) * N : 16) Pack {
  T v[N];
};

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// ---------------------------------------------------------------------------------------------- reductions

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32), returned to every thread. Safe to call repeatedly: the
// second barrier orders this call's reads of `total` before the next call's writes.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// ---------------------------------------------------------------------------------------------- row norms

// rms_rope: the rms norm, its output rounded to the storage dtype, then RoPE on that value (spec §1.5-1.6).
enum class Norm { layer, rms, rms_rope };

struct NormArgs {
  void* out;
  const void* x;
  int64_t d;
  const float* weight;
  const float* bias;
  const float* shift;
  const float* scale;
  float eps;
  // rms_rope only: rows [0, rope_rows) rotated by cos/sin f32 [rope_rows, head_dim/2]; head_dim even, a multiple
  // of the pack when pack_in_head (then a pack's pairs are contiguous in the table: one vector load each).
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t rope_rows = 0;
  int64_t head_dim = 0;
  bool pack_in_head = false;
  // layer with a residual step first (add_layer_norm): x (f32) += residual·gate (gate null: 1), stored back.
  const void* residual = nullptr;
  const float* gate = nullptr;
};

// x + y·gate as add_gated_kernel and the fused add + norm both compute it (one explicit rounding: the same bits).
__device__ __forceinline__ float gated_sum(float x, float y, const float* gate, int64_t c) {
  return __fmaf_rn(y, gate ? gate[c] : 1.f, x);
}

// Pair (x0, x1) rotated by the angle with cosine c and sine s. Explicit roundings (no contraction left to the
// compiler) so the rope kernel and the fused norm + rope kernel give the same bits.
__device__ __forceinline__ void rotate_pair(float& x0, float& x1, float c, float s) {
  const float r0 = __fmaf_rn(x0, c, -__fmul_rn(x1, s));
  const float r1 = __fmaf_rn(x0, s, __fmul_rn(x1, c));
  x0 = r0;
  x1 = r1;
}

// RoPE on one pack of a normalised row (already rounded to T, as the unfused norm stores it): its N/2 pairs
// start at column `first` of the row (N even, so a pair never straddles packs).
template <typename T, int N>
__device__ __forceinline__ void rotate_pack(Pack<T, N>& o, int64_t row, int64_t first, const NormArgs& a) {
  static_assert(N % 2 == 0, "rotate_pack: a pack holds whole pairs");
  constexpr int kPairs = N / 2;
  if (row >= a.rope_rows) return;  // padding tokens stay unrotated (spec §1.6)
  const int64_t pairs = a.head_dim / 2;
  const float* cos_row = a.cos + row * pairs;
  const float* sin_row = a.sin + row * pairs;
  float c[kPairs], s[kPairs];
  if (a.pack_in_head) {
    const int64_t k = (first % a.head_dim) / 2;
    const Pack<float, kPairs> cp = *reinterpret_cast<const Pack<float, kPairs>*>(cos_row + k);
    const Pack<float, kPairs> sp = *reinterpret_cast<const Pack<float, kPairs>*>(sin_row + k);
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      c[j] = cp.v[j];
      s[j] = sp.v[j];
    }
  } else {  // a head narrower than the pack, or not a multiple of it: pairs of two heads in one pack
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int64_t k = ((first + 2 * j) % a.head_dim) / 2;
      c[j] = cos_row[k];
      s[j] = sin_row[k];
    }
  }
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
    float x0 = to_float(o.v[2 * j]), x1 = to_float(o.v[2 * j + 1]);
    rotate_pair(x0, x1, c[j], s[j]);
    o.v[2 * j] = from_float<T>(x0);
    o.v[2 * j + 1] = from_float<T>(x1);
  }
}

// Calls f(it, i) for the packs i of this thread: it counts them, so a thread can keep pack `it` in a register
// array when the row fits (kCache > 0, fully unrolled), or just index the row again (kCache == 0).
template <int kCache, typename F>
__device__ __forceinline__ void for_my_packs(int64_t packs, F&& f) {
  if constexpr (kCache > 0) {
#pragma unroll
    for (int it = 0; it < kCache; ++it) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(it) * blockDim.x;
      if (i < packs) f(it, i);
    }
  } else {
    for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) f(0, i);
  }
}

// One block per row, three passes (sum, centred squares, write). Rows of up to kCache packs per thread are read
// once and held in registers; longer rows are re-read from L1/L2, so any length works. Each thread writes only
// the packs it read, after every read of the row (block_sum barriers): out == x (in place) is safe. rms_rope is
// the rms kernel with RoPE applied to each pack before its one write: the same sums in the same order, so the
// same bits as rms then rope. Tres (not void, layer only) first adds the residual of that type into x and stores the
// sum (each thread its own packs, before any read of them by a later pass).
template <Norm kNorm, typename Tin, typename Tout, int N, int kCache, typename Tres = void>
__global__ void norm_kernel(NormArgs a) {
  static_assert(std::is_void_v<Tres> || (kNorm == Norm::layer && std::is_same_v<Tin, float>),
                "the residual step is for the layer norm of the fp32 stream");
  const int64_t row = blockIdx.x;
  const auto* x = reinterpret_cast<const Pack<Tin, N>*>(static_cast<const Tin*>(a.x) + row * a.d);
  auto* out = reinterpret_cast<Pack<Tout, N>*>(static_cast<Tout*>(a.out) + row * a.d);
  const int64_t packs = a.d / N;
  const float d = static_cast<float>(a.d);
  Pack<Tin, N> cache[kCache > 0 ? kCache : 1] = {};
  auto pack = [&](int it, int64_t i) {
    if constexpr (kCache > 0)
      return cache[it];
    else
      return x[i];
  };

  float s = 0.f;
  for_my_packs<kCache>(packs, [&](int it, int64_t i) {
    Pack<Tin, N> p = x[i];
    if constexpr (!std::is_void_v<Tres>) {
      const Pack<Tres, N> r =
          reinterpret_cast<const Pack<Tres, N>*>(static_cast<const Tres*>(a.residual) + row * a.d)[i];
#pragma unroll
      for (int j = 0; j < N; ++j) p.v[j] = gated_sum(p.v[j], to_float(r.v[j]), a.gate, i * N + j);
      const_cast<Pack<Tin, N>*>(x)[i] = p;
    }
    if constexpr (kCache > 0) cache[it] = p;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float v = to_float(p.v[j]);
      // Explicit fma for the squares: rms and rms_rope instantiations sum the same bits whatever the compiler
      // would contract.
      s = kNorm == Norm::layer ? s + v : __fmaf_rn(v, v, s);
    }
  });
  s = block_sum(s);

  float mean = 0.f, inv;
  if constexpr (kNorm == Norm::layer) {
    // Two-pass variance, as the reference: E[x²] − E[x]² cancels badly for rows with a large mean.
    mean = s / d;
    float q = 0.f;
    for_my_packs<kCache>(packs, [&](int it, int64_t i) {
      const Pack<Tin, N> p = pack(it, i);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float c = to_float(p.v[j]) - mean;
        q += c * c;
      }
    });
    q = block_sum(q);
    inv = 1.f / sqrtf(q / d + a.eps);
  } else {
    inv = 1.f / sqrtf(s / d + a.eps);
  }

  for_my_packs<kCache>(packs, [&](int it, int64_t i) {
    const Pack<Tin, N> p = pack(it, i);
    Pack<Tout, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int64_t c = i * N + j;
      float y;
      if constexpr (kNorm == Norm::layer) {
        y = (to_float(p.v[j]) - mean) * inv;
        if (a.weight) y *= a.weight[c];
        if (a.bias) y += a.bias[c];
        if (a.scale) y = y * (1.f + a.scale[c]) + a.shift[c];
      } else {
        y = to_float(p.v[j]) * inv * a.weight[c];
      }
      o.v[j] = from_float<Tout>(y);
    }
    if constexpr (kNorm == Norm::rms_rope) rotate_pack(o, row, i * N, a);
    out[i] = o;
  });
}

// Packs per thread held in registers by the cached norm kernel (rows up to 512·4 packs: D ≤ 8192 f32).
constexpr int kNormCache = 4;
constexpr int kNormMaxThreads = 512;

// How a row norm is launched for x of Tin and out of Tout: chosen in one place, so the fused norm + rope launch
// sums exactly as the plain norm does.
struct NormLayout {
  bool vec;     // 16-byte loads of x: d a multiple of the pack and aligned base pointers
  int threads;  // per block (one block per row)
  bool cached;  // the row fits in kNormCache packs per thread
};

template <typename Tin, typename Tout>
NormLayout norm_layout(const NormArgs& a) {
  constexpr int kVec = 16 / sizeof(Tin);
  NormLayout l;
  l.vec = a.d % kVec == 0 && aligned(a.x, 16) && aligned(a.out, alignof(Pack<Tout, kVec>));
  const int64_t packs = l.vec ? a.d / kVec : a.d;
  // kNormCache packs per thread: four independent 16-byte loads in flight per thread and small blocks ran
  // the modulated norm at 3.4 TB/s on an H200 ([32760, 1536] f32 -> bf16), against 2.1 TB/s with one pack
  // per thread.
  const int64_t wanted = (packs + kNormCache - 1) / kNormCache;
  l.threads = static_cast<int>(std::clamp<int64_t>((wanted + 31) / 32 * 32, 32, kNormMaxThreads));
  l.cached = packs <= static_cast<int64_t>(l.threads) * kNormCache;
  return l;
}

// Launches norm_kernel<kNorm, Tin, Tout, ·, ·, Tres> with the layout of norm_layout (rms_rope only in the vector
// layout).
template <Norm kNorm, typename Tin, typename Tout, typename Tres = void>
void launch_norm_kernel(const NormArgs& a, const NormLayout& l, int64_t rows, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(Tin);
  const auto grid = static_cast<unsigned>(rows);
  if (l.vec && l.cached)
    norm_kernel<kNorm, Tin, Tout, kVec, kNormCache, Tres><<<grid, l.threads, 0, stream>>>(a);
  else if (l.vec)
    norm_kernel<kNorm, Tin, Tout, kVec, 0, Tres><<<grid, l.threads, 0, stream>>>(a);
  else if constexpr (kNorm == Norm::rms_rope)
    throw std::logic_error("cuda rms_norm_rope: the fused kernel needs 16-byte packs");
  else if (l.cached)
    norm_kernel<kNorm, Tin, Tout, 1, kNormCache, Tres><<<grid, l.threads, 0, stream>>>(a);
  else
    norm_kernel<kNorm, Tin, Tout, 1, 0, Tres><<<grid, l.threads, 0, stream>>>(a);
  check_launch();
}

template <Norm kNorm>
void launch_norm(const NormArgs& a, DType out_dtype, DType x_dtype, int64_t rows, cudaStream_t stream,
                 const char* op) {
  if (rows == 0 || a.d == 0) return;
  if (rows > INT_MAX) throw std::invalid_argument(std::string("cuda ") + op + ": too many rows");
  with_type(x_dtype, op, [&](auto xin) {
    with_type(out_dtype, op, [&](auto xout) {
      using Tin = decltype(xin);
      using Tout = decltype(xout);
      launch_norm_kernel<kNorm, Tin, Tout>(a, norm_layout<Tin, Tout>(a), rows, stream);
    });
  });
}

// ---------------------------------------------------------------------------------------------- element-wise

template <typename Tdst, typename Tsrc, int N>
__global__ void convert_kernel(Tdst* dst, const Tsrc* src, int64_t packs) {
  DITRUN_GRID_STRIDE(i, packs) {
    const Pack<Tsrc, N> a = reinterpret_cast<const Pack<Tsrc, N>*>(src)[i];
    Pack<Tdst, N> b;
#pragma unroll
    for (int j = 0; j < N; ++j) b.v[j] = from_float<Tdst>(to_float(a.v[j]));
    reinterpret_cast<Pack<Tdst, N>*>(dst)[i] = b;
  }
}

// P pairs per thread (one 16-byte access of x when P > 1; then P divides d/2, so the pairs share a token and
// their cos/sin entries are contiguous).
template <typename T, int P>
__global__ void rope_kernel(T* x, const float* cos, const float* sin, int64_t heads, int64_t d, int64_t pairs,
                            int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t first = i * P, token_head = first / pairs, k = first % pairs, t = token_head / heads;
    T* base = x + token_head * d + 2 * k;  // an odd d leaves its last element alone
    Pack<T, 2 * P> p;
    if constexpr (P == 1) {  // an odd d puts pairs at odd offsets: element accesses
      p.v[0] = base[0];
      p.v[1] = base[1];
    } else {
      p = *reinterpret_cast<const Pack<T, 2 * P>*>(base);
    }
    const Pack<float, P> c = *reinterpret_cast<const Pack<float, P>*>(cos + t * pairs + k);
    const Pack<float, P> s = *reinterpret_cast<const Pack<float, P>*>(sin + t * pairs + k);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      float x0 = to_float(p.v[2 * j]), x1 = to_float(p.v[2 * j + 1]);
      rotate_pair(x0, x1, c.v[j], s.v[j]);
      p.v[2 * j] = from_float<T>(x0);
      p.v[2 * j + 1] = from_float<T>(x1);
    }
    if constexpr (P == 1) {
      base[0] = p.v[0];
      base[1] = p.v[1];
    } else {
      *reinterpret_cast<Pack<T, 2 * P>*>(base) = p;
    }
  }
}

// N consecutive elements per access when d allows (N divides d, so a pack never straddles two rows).
template <typename T, int N>
__global__ void add_gated_kernel(float* x, const T* y, const float* gate, int64_t d, int64_t packs) {
  auto* xp = reinterpret_cast<Pack<float, N>*>(x);
  const auto* yp = reinterpret_cast<const Pack<T, N>*>(y);
  DITRUN_GRID_STRIDE(i, packs) {
    Pack<float, N> a = xp[i];
    const Pack<T, N> b = yp[i];
    const int64_t c = (i * N) % d;
#pragma unroll
    for (int j = 0; j < N; ++j) a.v[j] = gated_sum(a.v[j], to_float(b.v[j]), gate, c + j);
    xp[i] = a;
  }
}

template <typename Tout>
__global__ void fill_normal_kernel(Tout* out, int64_t n, uint64_t seed, uint64_t stream_id, float mean, float std_dev) {
  DITRUN_GRID_STRIDE(i, n) {
    out[i] = from_float<Tout>(mean + std_dev * philox_normal(seed, stream_id, static_cast<uint64_t>(i)));
  }
}

template <typename Tout, typename Tin>
__global__ void silu_kernel(Tout* out, const Tin* x, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const float v = to_float(x[i]);
    out[i] = from_float<Tout>(v / (1.f + expf(-v)));
  }
}

struct LincombArgs {
  const float* in[kMaxLincombInputs];
  float c[kMaxLincombInputs];
  int count;
};

// Each element reads every input before writing out, so out may alias any input.
__global__ void lincomb_kernel(float* out, LincombArgs a, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    float s = 0.f;
#pragma unroll  // constant indices keep the arguments in parameter space, not a local copy
    for (int j = 0; j < kMaxLincombInputs; ++j)
      if (j < a.count) s += a.c[j] * a.in[j][i];
    out[i] = s;
  }
}

// One thread per token feature: coalesced writes, gathered reads (the latent is small).
template <typename T>
__global__ void patchify_kernel(T* tokens, const float* latent, int64_t c, int64_t f, int64_t h, int64_t w,
                                int64_t n) {
  const int64_t hp = h / 2, wp = w / 2, features = 4 * c;
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t t = i / features, j = i % features;
    const int64_t ci = j % c, kh = j / c / 2, kw = (j / c) % 2;  // feature (kh·2 + kw)·C + c
    const int64_t fi = t / (hp * wp), a = (t / wp) % hp, b = t % wp;
    tokens[i] = from_float<T>(latent[((ci * f + fi) * h + a * 2 + kh) * w + b * 2 + kw]);
  }
}

// One thread per latent element of the even-sized region (the reference leaves an odd last row/column alone).
template <typename T>
__global__ void unpatchify_kernel(float* latent, const T* tokens, int64_t c, int64_t f, int64_t h, int64_t w,
                                  int64_t n) {
  const int64_t hp = h / 2, wp = w / 2, he = 2 * hp, we = 2 * wp;
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t x = i % we, y = (i / we) % he, fi = (i / (we * he)) % f, ci = i / (we * he * f);
    const int64_t a = y / 2, q = y % 2, b = x / 2, r = x % 2;
    latent[((ci * f + fi) * h + y) * w + x] = to_float(tokens[((fi * hp + a) * wp + b) * 4 * c + (q * 2 + r) * c + ci]);
  }
}

// One thread per (token, head, element); the weights are recomputed per element from the two lse values.
template <typename T>
__global__ void attention_merge_kernel(float* acc, float* lse_acc, const T* part, const float* lse_part, int64_t lq,
                                       int64_t heads, int64_t d, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const int64_t row = i / d, token = row / heads, head = row % heads;
    const float a = lse_acc[head * lq + token], b = lse_part[head * lq + token];
    if (b == -INFINITY) continue;
    const float m = fmaxf(a, b);
    const float l = m + logf(expf(a - m) + expf(b - m));
    acc[i] = acc[i] * expf(a - l) + to_float(part[i]) * expf(b - l);
  }
}

__global__ void store_merged_lse(float* lse_acc, const float* lse_part, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    const float a = lse_acc[i], b = lse_part[i];
    if (b == -INFINITY) continue;
    const float m = fmaxf(a, b);
    lse_acc[i] = m + logf(expf(a - m) + expf(b - m));
  }
}

}  // namespace

void attention_merge(float* acc, float* lse_acc, const void* part, DType part_dtype, const float* lse_part, int64_t lq,
                     int64_t heads, int64_t d, cudaStream_t stream) {
  const int64_t n = lq * heads * d;
  if (n == 0) return;
  with_type(part_dtype, "attention_merge", [&](auto v) {
    using T = decltype(v);
    attention_merge_kernel<<<blocks_for(n), kThreads, 0, stream>>>(acc, lse_acc, static_cast<const T*>(part),
                                                                    lse_part, lq, heads, d, n);
  });
  check_launch();
  // The lse update must follow every element's use of the old value: a second kernel on the same stream.
  store_merged_lse<<<blocks_for(lq * heads), kThreads, 0, stream>>>(lse_acc, lse_part, lq * heads);
  check_launch();
}

void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (dst_dtype == src_dtype) {
    if (dst != src)
      DITRUN_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype),
                                        cudaMemcpyDeviceToDevice, stream));
    return;
  }
  with_type(dst_dtype, "convert", [&](auto d) {
    with_type(src_dtype, "convert", [&](auto s) {
      using Td = decltype(d);
      using Ts = decltype(s);
      constexpr int kVec = 4;
      if (n % kVec == 0 && aligned(dst, alignof(Pack<Td, kVec>)) && aligned(src, alignof(Pack<Ts, kVec>)))
        convert_kernel<Td, Ts, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(static_cast<Td*>(dst),
                                                                                   static_cast<const Ts*>(src),
                                                                                   n / kVec);
      else
        convert_kernel<Td, Ts, 1><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<Td*>(dst),
                                                                         static_cast<const Ts*>(src), n);
    });
  });
  check_launch();
}

void layer_norm(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t rows, int64_t d,
                const float* weight, const float* bias, const float* shift, const float* scale, float eps,
                cudaStream_t stream) {
  if ((shift == nullptr) != (scale == nullptr))
    throw std::invalid_argument("cuda layer_norm: shift and scale go together");
  launch_norm<Norm::layer>({out, x, d, weight, bias, shift, scale, eps}, out_dtype, x_dtype, rows, stream,
                           "layer_norm");
}

void rms_norm(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t rows, int64_t d, const float* weight,
              float eps, cudaStream_t stream) {
  if (weight == nullptr) throw std::invalid_argument("cuda rms_norm: weight is required");
  launch_norm<Norm::rms>({out, x, d, weight, nullptr, nullptr, nullptr, eps}, out_dtype, x_dtype, rows, stream,
                         "rms_norm");
}

void rope(void* x, DType dtype, int64_t rows, int64_t heads, int64_t d, const float* cos, const float* sin,
          cudaStream_t stream) {
  const int64_t pairs = d / 2, n = rows * heads * pairs;
  if (n == 0) return;
  with_type(dtype, "rope", [&](auto v) {
    using T = decltype(v);
    constexpr int kPairs = 16 / (2 * sizeof(T));
    auto* xt = static_cast<T*>(x);
    if (d % (2 * kPairs) == 0 && aligned(x, 16) && aligned(cos, alignof(Pack<float, kPairs>)) &&
        aligned(sin, alignof(Pack<float, kPairs>)))
      rope_kernel<T, kPairs><<<blocks_for(n / kPairs), kThreads, 0, stream>>>(xt, cos, sin, heads, d, pairs,
                                                                             n / kPairs);
    else
      rope_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(xt, cos, sin, heads, d, pairs, n);
  });
  check_launch();
}

void rms_norm_rope(void* x, DType dtype, int64_t rows, int64_t heads, int64_t head_dim, const float* weight,
                   float eps, const float* cos, const float* sin, int64_t rope_rows, cudaStream_t stream) {
  if (weight == nullptr) throw std::invalid_argument("cuda rms_norm_rope: weight is required");
  const int64_t d = heads * head_dim;
  if (rows == 0 || d == 0) return;
  if (rows > INT_MAX) throw std::invalid_argument("cuda rms_norm_rope: too many rows");
  rope_rows = std::min(rope_rows, rows);
  with_type(dtype, "rms_norm_rope", [&](auto v) {
    using T = decltype(v);
    constexpr int kVec = 16 / sizeof(T);
    NormArgs a{x, x, d, weight, nullptr, nullptr, nullptr, eps};
    a.cos = cos;
    a.sin = sin;
    a.rope_rows = rope_rows;
    a.head_dim = head_dim;
    a.pack_in_head = head_dim % kVec == 0 && aligned(cos, 16) && aligned(sin, 16);
    const NormLayout layout = norm_layout<T, T>(a);
    if (layout.vec && head_dim % 2 == 0) {
      launch_norm_kernel<Norm::rms_rope, T, T>(a, layout, rows, stream);
    } else {  // rows without 16-byte packs, or pairs across heads: the two kernels, which are the definition
      launch_norm_kernel<Norm::rms, T, T>(a, layout, rows, stream);
      rope(x, dtype, rope_rows, heads, head_dim, cos, sin, stream);
    }
  });
}

void add_gated(float* x, const void* y, DType y_dtype, const float* gate, int64_t rows, int64_t d,
               cudaStream_t stream) {
  const int64_t n = rows * d;
  if (n == 0) return;
  with_type(y_dtype, "add", [&](auto v) {
    using T = decltype(v);
    constexpr int kVec = 4;
    if (d % kVec == 0 && aligned(x, 16) && aligned(y, alignof(Pack<T, kVec>)))
      add_gated_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(x, static_cast<const T*>(y), gate, d,
                                                                               n / kVec);
    else
      add_gated_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(x, static_cast<const T*>(y), gate, d, n);
  });
  check_launch();
}

void add_layer_norm(float* x, const void* y, DType y_dtype, const float* gate, void* out, DType out_dtype,
                    int64_t rows, int64_t d, const float* weight, const float* bias, const float* shift,
                    const float* scale, float eps, cudaStream_t stream) {
  if ((shift == nullptr) != (scale == nullptr))
    throw std::invalid_argument("cuda add_layer_norm: shift and scale go together");
  if (rows == 0 || d == 0) return;
  if (rows > INT_MAX) throw std::invalid_argument("cuda add_layer_norm: too many rows");
  NormArgs a{out, x, d, weight, bias, shift, scale, eps};
  with_type(y_dtype, "add_layer_norm", [&](auto yv) {
    with_type(out_dtype, "add_layer_norm", [&](auto ov) {
      using Ty = decltype(yv);
      using Tout = decltype(ov);
      // The layout layer_norm itself would take (same sums, same bits); its packs of x must be packs of y too.
      const NormLayout layout = norm_layout<float, Tout>(a);
      if (!layout.vec || aligned(y, alignof(Pack<Ty, 16 / sizeof(float)>))) {
        NormArgs fused = a;
        fused.residual = y;
        fused.gate = gate;
        launch_norm_kernel<Norm::layer, float, Tout, Ty>(fused, layout, rows, stream);
      } else {
        add_gated(x, y, y_dtype, gate, rows, d, stream);
        launch_norm_kernel<Norm::layer, float, Tout>(a, layout, rows, stream);
      }
    });
  });
}

void silu(void* out, DType out_dtype, const void* x, DType x_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  with_type(out_dtype, "silu", [&](auto o) {
    with_type(x_dtype, "silu", [&](auto i) {
      using To = decltype(o);
      using Ti = decltype(i);
      silu_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<To*>(out), static_cast<const Ti*>(x), n);
    });
  });
  check_launch();
}

void fill_normal(void* out, DType out_dtype, int64_t n, uint64_t seed, uint64_t stream_id, float mean, float std_dev,
                 cudaStream_t stream) {
  if (n == 0) return;
  with_type(out_dtype, "fill_normal", [&](auto o) {
    using To = decltype(o);
    fill_normal_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<To*>(out), n, seed, stream_id, mean,
                                                               std_dev);
  });
  check_launch();
}

void lincomb(float* out, const float* const* inputs, const float* coeffs, int count, int64_t n, cudaStream_t stream) {
  if (count < 0 || count > kMaxLincombInputs)
    throw std::invalid_argument("cuda lincomb: " + std::to_string(count) + " inputs (at most " +
                                std::to_string(kMaxLincombInputs) + ")");
  if (n == 0) return;
  LincombArgs a{};
  for (int j = 0; j < count; ++j) {
    a.in[j] = inputs[j];
    a.c[j] = coeffs[j];
  }
  a.count = count;
  lincomb_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, a, n);
  check_launch();
}

void patchify(void* tokens, DType tokens_dtype, const float* latent, int64_t c, int64_t f, int64_t h, int64_t w,
              cudaStream_t stream) {
  const int64_t n = f * (h / 2) * (w / 2) * 4 * c;
  if (n == 0) return;
  with_type(tokens_dtype, "patchify", [&](auto v) {
    using T = decltype(v);
    patchify_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<T*>(tokens), latent, c, f, h, w, n);
  });
  check_launch();
}

void unpatchify(float* latent, const void* tokens, DType tokens_dtype, int64_t c, int64_t f, int64_t h, int64_t w,
                cudaStream_t stream) {
  const int64_t n = c * f * (h / 2 * 2) * (w / 2 * 2);
  if (n == 0) return;
  with_type(tokens_dtype, "unpatchify", [&](auto v) {
    using T = decltype(v);
    unpatchify_kernel<<<blocks_for(n), kThreads, 0, stream>>>(latent, static_cast<const T*>(tokens), c, f, h, w, n);
  });
  check_launch();
}

}  // namespace ditrun::cuda

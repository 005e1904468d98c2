// Implicit-GEMM convolution on mma.sync bf16 tensor cores (see conv3d_igemm.h for the shifted-rows idea).
// Tile: 128 flat pixels × BN output channels per CTA, 8 warps as 4 (pixels) × 2 (channels), K in steps of 32
// input channels of one row of kw taps, a 3-stage cp.async pipeline, XOR-swizzled shared memory read with
// ldmatrix.
#include "model/cuda/conv3d_igemm.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/kernel_util.cuh"

namespace ditrun::cuda {

namespace {

using namespace kernel;

constexpr int kTileM = 128;
constexpr int kTileK = 32;  // = kConvChannelStep: one K step never crosses a row of taps
constexpr int kStages = 3;  // 2 CTAs of 8 warps fit an SM at the widest tile (2 × 99 KiB)
constexpr int kConvThreads = 256;

// Rows of 64 bytes (32 bf16) hold 4 chunks of 16 bytes; the chunk index is XORed with bits 1-2 of the row so the
// 8 rows one ldmatrix phase reads land in 8 different 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) { return row * 4 + (chunk ^ ((row >> 1) & 3)); }

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// in_rows: pixels of the padded input; m_total: flat output positions computed (valid or not).
// K runs over (a, b) tap rows × 32-channel chunks. The kw taps of one (a, b) read the same input rows shifted by
// 0..kw−1 pixels, so a stage holds one slab of kTileM + kw − 1 rows and the kw taps' weights: every input row is
// fetched once per (a, b) instead of once per tap, and each barrier covers kw × 2 MMA k-steps.
// kSplit: this CTA sums the tap rows of part blockIdx.z only, into the partial sums at out + z·split_stride (a
// template flag so the unsplit kernel's code stays as tight as without split K: a runtime split cost the 96- and
// 32-channel tiles 3-15% on an H100).
template <int BN, int KW, bool kSplit>
__global__ void __launch_bounds__(kConvThreads, 2) conv3d_igemm_kernel(
    float* __restrict__ out, const bf16* __restrict__ in, const bf16* __restrict__ weight,
    const float* __restrict__ bias, const float* __restrict__ residual, int kh, int tap_rows, int cp, int co,
    int in_rows, int m_total, int hp, int wp, int ho, int wo, int rows_per_split, int64_t split_stride) {
  constexpr int kWarpN = BN / 2;                   // channels per warp
  constexpr int kFragsN = kWarpN / 8;              // n8 fragments per warp (even: loaded in pairs)
  constexpr int kSlabRows = kTileM + KW - 1;
  constexpr int kStageA = kSlabRows * kTileK;      // bf16 elements
  constexpr int kStageB = KW * BN * kTileK;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* smem_a = reinterpret_cast<bf16*>(smem_raw);
  bf16* smem_b = smem_a + kStages * kStageA;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp & 3, warp_n = warp >> 2;
  const int m0 = blockIdx.x * kTileM, n0 = blockIdx.y * BN;
  const int k_per_row = cp / kTileK;
  const int first_step = kSplit ? blockIdx.z * rows_per_split * k_per_row : 0;
  const int k_steps = kSplit ? min(tap_rows * k_per_row - first_step, rows_per_split * k_per_row) : tap_rows * k_per_row;
  if (kSplit) out += blockIdx.z * split_stride;
  const int64_t weight_row = static_cast<int64_t>(tap_rows) * KW * cp;

  auto load_stage = [&](int stage, int local_step) {
    const int step = first_step + local_step;
    const int tap_row = step / k_per_row, c0 = (step - tap_row * k_per_row) * kTileK;
    const int a = tap_row / kh, b = tap_row - a * kh;
    const int shift = (a * hp + b) * wp;  // the (a, b) rows' flat-pixel shift; tap c adds c
    const uint32_t a_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_a + stage * kStageA));
    const uint32_t b_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_b + stage * kStageB));
#pragma unroll
    for (int i = 0; i < (kSlabRows * 4 + kConvThreads - 1) / kConvThreads; ++i) {
      const int id = tid + i * kConvThreads;
      if (id < kSlabRows * 4) {
        const int row = id >> 2, chunk = id & 3;
        const int src_row = m0 + row + shift;
        const bool valid = src_row < in_rows;
        const bf16* src = valid ? in + static_cast<int64_t>(src_row) * cp + c0 + chunk * 8 : in;
        cp_async_16(a_base + swizzled(row, chunk) * 16, src, valid);
      }
    }
#pragma unroll
    for (int i = 0; i < (KW * BN * 4 + kConvThreads - 1) / kConvThreads; ++i) {
      const int id = tid + i * kConvThreads;
      if (id < KW * BN * 4) {
        const int row = id >> 2, chunk = id & 3;  // row = c·BN + n
        const int c = row / BN, n = row - c * BN;
        const bf16* src = weight + static_cast<int64_t>(n0 + n) * weight_row +
                          static_cast<int64_t>(tap_row * KW + c) * cp + c0 + chunk * 8;
        cp_async_16(b_base + swizzled(row, chunk) * 16, src, true);
      }
    }
  };

  float acc[2][kFragsN][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < kFragsN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_steps) load_stage(s, s);
    cp_async_commit();
  }

  for (int step = 0; step < k_steps; ++step) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // this stage landed for every thread; the stage refilled below was consumed by everyone
    const int next = step + kStages - 1;
    if (next < k_steps) load_stage(next % kStages, next);
    cp_async_commit();

    const int stage = step % kStages;
    const uint32_t a_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_a + stage * kStageA));
    const uint32_t b_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_b + stage * kStageB));
#pragma unroll
    for (int c = 0; c < KW; ++c)
#pragma unroll
      for (int kk = 0; kk < kTileK / 16; ++kk) {
        uint32_t af[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int row = warp_m * 32 + i * 16 + (lane & 15) + c, chunk = kk * 2 + (lane >> 4);
          ldmatrix_x4(af[i], a_base + swizzled(row, chunk) * 16);
        }
#pragma unroll
        for (int j = 0; j < kFragsN; j += 2) {
          uint32_t bf[4];
          const int row = c * BN + warp_n * kWarpN + j * 8 + (lane & 7) + ((lane >> 4) << 3);
          const int chunk = kk * 2 + ((lane >> 3) & 1);
          ldmatrix_x4(bf, b_base + swizzled(row, chunk) * 16);
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            mma_bf16(acc[i][j], af[i], bf[0], bf[1]);
            mma_bf16(acc[i][j + 1], af[i], bf[2], bf[3]);
          }
        }
      }
  }
  cp_async_wait<0>();

  // Epilogue: keep the flat positions that are real outputs, add the bias, write f32 channels-last.
  const int plane = hp * wp;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int p = m0 + warp_m * 32 + i * 16 + (lane >> 2) + half * 8;
      if (p >= m_total) continue;
      const int t = p / plane, r = p - t * plane, y = r / wp, x = r - y * wp;
      if (y >= ho || x >= wo) continue;
      const int64_t row_offset = ((static_cast<int64_t>(t) * ho + y) * wo + x) * co;
      float* row_out = out + row_offset;
      const float* row_res = residual ? residual + row_offset : nullptr;
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        const int n = n0 + warp_n * kWarpN + j * 8 + (lane & 3) * 2;
        const float v0 = acc[i][j][half * 2], v1 = acc[i][j][half * 2 + 1];
        if (n + 1 < co && (co & 1) == 0) {
          float2 add = bias ? make_float2(bias[n], bias[n + 1]) : make_float2(0.f, 0.f);
          if (row_res) {
            const float2 r = *reinterpret_cast<const float2*>(row_res + n);
            add.x += r.x, add.y += r.y;
          }
          *reinterpret_cast<float2*>(row_out + n) = make_float2(v0 + add.x, v1 + add.y);
        } else {
          if (n < co) row_out[n] = v0 + (bias ? bias[n] : 0.f) + (row_res ? row_res[n] : 0.f);
          if (n + 1 < co) row_out[n + 1] = v1 + (bias ? bias[n + 1] : 0.f) + (row_res ? row_res[n + 1] : 0.f);
        }
      }
    }
}

// The split-K partial sums added up: out = Σ_s partial[s] + bias + residual, in split order (deterministic).
__global__ void conv_split_reduce_kernel(float* out, const float* partial, int splits, int64_t split_stride,
                                         const float* bias, const float* residual, int64_t co, int64_t n) {
  DITRUN_GRID_STRIDE(i, n) {
    float v = partial[i];
    for (int s = 1; s < splits; ++s) v += partial[s * split_stride + i];
    if (bias) v += bias[i % co];
    if (residual) v += residual[i];
    out[i] = v;
  }
}

// A group of `lanes` lanes (a power of two ≤ 32, at least one lane per 8 padded channels up to 32) per padded
// pixel of [history; x], each lane 8 channels at a time (two 16-byte loads, one 16-byte store): zeros in the border
// and past ci; inside, the pixel's channels, through SiLU(RMS_norm(·, gamma)) when gamma is given (the VAE's
// per-pixel norm, spec §4.2, its sum of squares reduced over the group).
__global__ void conv_pack_input_kernel(bf16* padded, const float* history, int history_frames, const float* x,
                                       const float* gamma, const float* halo_rows, int frames, int hi, int wi, int ci,
                                       int cp, int pad_h, int pad_w, int lane_bits) {
  // x of the grid: the lanes of one padded row's pixels; y: padded rows (frame, row), strided when there are more
  // than the grid has. 32-bit index math (conv_pack_input checks the sizes): 64-bit divisions per thread made
  // this memory-bound copy cost as much as its traffic again.
  const int lanes = 1 << lane_bits;
  const int hp = hi + 2 * pad_h, wp = wi + 2 * pad_w, groups = cp / 8;
  const int thread = blockIdx.x * blockDim.x + threadIdx.x;
  const int col = thread >> lane_bits, lane = thread & (lanes - 1);
  const bool active = col < wp;  // inactive lanes still join the group's shuffles
  const int xs = col - pad_w;
  const bool in_row = active && xs >= 0 && xs < wi;
  const bool vec = (ci & 7) == 0;
  for (int row = blockIdx.y; row < frames * hp; row += gridDim.y) {  // uniform over the block
    const int t = row / hp, ys = row - t * hp - pad_h;
    // With halo rows, the padding row above (ys = −1) and below (ys = hi) comes from them (pad_h is 1 then).
    const bool halo = halo_rows && in_row && (ys < 0 || ys >= hi);
    const bool inside = in_row && ((ys >= 0 && ys < hi) || halo);
    const float* src = !inside ? nullptr
                       : halo  ? halo_rows + ((static_cast<int64_t>(ys < 0 ? 0 : frames) + t) * wi + xs) * ci
                       : t < history_frames
                           ? history + ((static_cast<int64_t>(t) * hi + ys) * wi + xs) * ci
                           : x + ((static_cast<int64_t>(t - history_frames) * hi + ys) * wi + xs) * ci;
    auto load8 = [&](int g, float (&v)[8]) {
      if (inside && vec && g * 8 < ci) {
        const float4 lo = reinterpret_cast<const float4*>(src)[2 * g];
        const float4 hi4 = reinterpret_cast<const float4*>(src)[2 * g + 1];
        v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi4.x, v[5] = hi4.y, v[6] = hi4.z, v[7] = hi4.w;
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = inside && g * 8 + e < ci ? src[g * 8 + e] : 0.f;
      }
    };
    float factor = 1.f;
    if (gamma) {  // uniform over the grid: every lane of a group takes this branch
      float ss = 0.f;
      for (int g = lane; g < groups; g += lanes) {
        float v[8];
        load8(g, v);
#pragma unroll
        for (int e = 0; e < 8; ++e) ss += v[e] * v[e];
      }
      for (int offset = lanes / 2; offset > 0; offset >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, offset, lanes);
      factor = sqrtf(static_cast<float>(ci)) / fmaxf(sqrtf(ss), 1e-12f);
    }
    if (!active) continue;
    bf16* dst = padded + (static_cast<int64_t>(row) * wp + col) * cp;
    for (int g = lane; g < groups; g += lanes) {
      float v[8];
      load8(g, v);  // the second read of a pixel's channels comes from L1
      __align__(16) bf16 out[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        float y = v[e];
        if (gamma && g * 8 + e < ci) {
          y = y * factor * gamma[g * 8 + e];
          y = y / (1.f + expf(-y));
        }
        out[e] = __float2bfloat16_rn(y);
      }
      reinterpret_cast<uint4*>(dst)[g] = *reinterpret_cast<const uint4*>(out);
    }
  }
}

// One thread per packed element, 32-bit indices (conv_pack_weight checks the size): the weights are packed on
// every call, so this runs ~30 times per latent frame.
__global__ void conv_pack_weight_kernel(bf16* packed, const float* weight, int co, int taps, int ci, int cp, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int c = i % cp, row = i / cp, tap = row % taps, o = row / taps;
  packed[i] = __float2bfloat16_rn(o < co && c < ci ? weight[(static_cast<int64_t>(o) * taps + tap) * ci + c] : 0.f);
}

// The output-channel tile for co channels: a divisor of co where one fits (no padding), else 64.
int tile_n(int64_t co) {
  if (co <= 32) return 32;
  if (co % 128 == 0) return 128;
  if (co % 96 == 0) return 96;
  return 64;
}

// The problem of one convolution call, as the launchers pass it on.
struct ConvCall {
  float* out;
  const bf16* in;
  const bf16* weight;
  const float* bias;
  const float* residual;
  int kh, tap_rows, cp, co, cop, in_rows, m_total, hp, wp, ho, wo;
  int splits;            // of the tap rows (split K); 1: none
  float* partial;        // splits × out elements when splits > 1
  int64_t out_elements;
};

template <int BN, int KW>
constexpr size_t smem_bytes() {
  return static_cast<size_t>(kStages) * ((kTileM + KW - 1) + KW * BN) * kTileK * sizeof(bf16);
}

// CTAs of this tile that run at once on the whole GPU (the current device's), found once per instantiation;
// the first call also sets both variants' shared-memory opt-in above 48 KiB.
template <int BN, int KW>
int resident_ctas() {
  static int ctas = 0;
  if (ctas == 0) {
    const int smem = static_cast<int>(smem_bytes<BN, KW>());
    DITRUN_CUDA_CHECK(cudaFuncSetAttribute(conv3d_igemm_kernel<BN, KW, false>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    DITRUN_CUDA_CHECK(cudaFuncSetAttribute(conv3d_igemm_kernel<BN, KW, true>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int device = 0, sms = 0, per_sm = 0;
    DITRUN_CUDA_CHECK(cudaGetDevice(&device));
    DITRUN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    DITRUN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, conv3d_igemm_kernel<BN, KW, false>,
                                                                    kConvThreads, smem));
    ctas = std::max(1, sms * per_sm);
  }
  return ctas;
}

template <int KW>
int resident_ctas_for_width(int bn) {
  switch (bn) {
    case 32: return resident_ctas<32, KW>();
    case 64: return resident_ctas<64, KW>();
    case 96: return resident_ctas<96, KW>();
    default: return resident_ctas<128, KW>();
  }
}

// Split K over the tap rows when the tiles fill the GPU badly: the latent-resolution convolutions (and any row
// band of them) have fewer tiles than the GPU runs at once, so each CTA's whole K loop is the convolution's
// latency. With s splits a convolution takes ⌈tiles·s / resident⌉ / s of the unsplit waves; the smallest s with
// the fewest waves, taken only when it saves at least 15% (the partial sums cost a pass over s outputs) and each
// part keeps at least 32 K steps: a shorter loop is mostly pipeline fill (time_conv, 3×1×1 over 384 channels, ran
// 27% slower split in 3 parts of 12 steps on an H200; the latent 3×3×3 over 384 runs 3 parts of 108).
int tap_row_splits(int64_t tiles, int tap_rows, int64_t cp, int resident) {
  const auto waves = [&](int s) { return static_cast<double>((tiles * s + resident - 1) / resident) / s; };
  constexpr int64_t kMinStepsPerSplit = 32;
  int best = 1;
  for (int s = 2; s <= tap_rows; ++s)
    if (tap_rows % s == 0 && (tap_rows / s) * cp / kTileK >= kMinStepsPerSplit && waves(s) < waves(best) - 1e-9)
      best = s;
  return waves(best) <= 0.85 * waves(1) ? best : 1;
}

template <int BN, int KW>
void launch(const ConvCall& c, cudaStream_t stream) {
  resident_ctas<BN, KW>();  // sets the shared-memory opt-in on first use
  const dim3 grid(static_cast<unsigned>((c.m_total + kTileM - 1) / kTileM), static_cast<unsigned>(c.cop / BN),
                  static_cast<unsigned>(c.splits));
  const bool split = c.splits > 1;
  if (split)
    conv3d_igemm_kernel<BN, KW, true><<<grid, kConvThreads, smem_bytes<BN, KW>(), stream>>>(
        c.partial, c.in, c.weight, nullptr, nullptr, c.kh, c.tap_rows, c.cp, c.co, c.in_rows, c.m_total, c.hp, c.wp,
        c.ho, c.wo, c.tap_rows / c.splits, c.out_elements);
  else
    conv3d_igemm_kernel<BN, KW, false><<<grid, kConvThreads, smem_bytes<BN, KW>(), stream>>>(
        c.out, c.in, c.weight, c.bias, c.residual, c.kh, c.tap_rows, c.cp, c.co, c.in_rows, c.m_total, c.hp, c.wp,
        c.ho, c.wo, c.tap_rows, 0);
  check_launch();
  if (split) {
    conv_split_reduce_kernel<<<blocks_for(c.out_elements), kThreads, 0, stream>>>(
        c.out, c.partial, c.splits, c.out_elements, c.bias, c.residual, c.co, c.out_elements);
    check_launch();
  }
}

template <int KW>
void launch_for_width(int bn, const ConvCall& c, cudaStream_t stream) {
  switch (bn) {
    case 32: return launch<32, KW>(c, stream);
    case 64: return launch<64, KW>(c, stream);
    case 96: return launch<96, KW>(c, stream);
    default: return launch<128, KW>(c, stream);
  }
}

// The split for a problem: tiles of this shape against the CTAs its tile width runs at once.
int splits_for(int64_t ti, int64_t hp, int64_t wp, int64_t cp, int64_t co, int64_t kt, int64_t kh, int64_t kw) {
  const int64_t to = ti - kt + 1, ho = hp - kh + 1, wo = wp - kw + 1;
  if (to <= 0 || ho <= 0 || wo <= 0 || co == 0) return 1;
  const int64_t m_total = (to - 1) * hp * wp + (ho - 1) * wp + wo, bn = tile_n(co);
  const int64_t tiles = (m_total + kTileM - 1) / kTileM * ((co + bn - 1) / bn);
  const int resident = kw == 3 ? resident_ctas_for_width<3>(static_cast<int>(bn))
                               : resident_ctas_for_width<1>(static_cast<int>(bn));
  return tap_row_splits(tiles, static_cast<int>(kt * kh), cp, resident);
}

}  // namespace

int64_t conv_padded_in_channels(int64_t ci) {
  return (ci + kConvChannelStep - 1) / kConvChannelStep * kConvChannelStep;
}

int64_t conv_padded_out_channels(int64_t co) {
  const int64_t bn = tile_n(co);
  return (co + bn - 1) / bn * bn;
}

void conv_pack_input(void* padded, const float* history, int64_t history_frames, const float* x, int64_t frames,
                     const float* gamma, const float* halo_rows, int64_t hi, int64_t wi, int64_t ci, int64_t cp,
                     int64_t pad_h, int64_t pad_w, cudaStream_t stream) {
  if (halo_rows && pad_h != 1) throw std::invalid_argument("cuda conv3d: halo rows need pad_h 1");
  const int64_t hp = hi + 2 * pad_h, wp = wi + 2 * pad_w, rows = (history_frames + frames) * hp;
  if (rows == 0 || wp == 0) return;
  int lane_bits = 0;
  while (lane_bits < 5 && (int64_t{8} << lane_bits) < cp) ++lane_bits;
  const int64_t row_threads = wp << lane_bits;
  // 32-bit pixel indices in the kernel (the implicit GEMM has the same limit).
  if (rows * wp >= (int64_t{1} << 31) || row_threads > INT_MAX - kThreads || cp > INT_MAX)
    throw std::invalid_argument("cuda conv3d: input too large to pack (" + std::to_string(rows * wp) + " pixels of " +
                                std::to_string(cp) + " channels)");
  const dim3 grid(static_cast<unsigned>((row_threads + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  conv_pack_input_kernel<<<grid, kThreads, 0, stream>>>(
      static_cast<bf16*>(padded), history, static_cast<int>(history_frames), x, gamma, halo_rows,
      static_cast<int>(history_frames + frames), static_cast<int>(hi), static_cast<int>(wi), static_cast<int>(ci),
      static_cast<int>(cp), static_cast<int>(pad_h), static_cast<int>(pad_w), lane_bits);
  check_launch();
}

void conv_pack_weight(void* packed, const float* weight, int64_t co, int64_t taps, int64_t ci, int64_t cop,
                      int64_t cp, cudaStream_t stream) {
  const int64_t n = cop * taps * cp;
  if (n == 0) return;
  if (n > INT_MAX - kThreads) throw std::invalid_argument("cuda conv3d: weight too large to pack");
  conv_pack_weight_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      static_cast<bf16*>(packed), weight, static_cast<int>(co), static_cast<int>(taps), static_cast<int>(ci),
      static_cast<int>(cp), static_cast<int>(n));
  check_launch();
}

int64_t conv3d_igemm_workspace_floats(int64_t ti, int64_t hp, int64_t wp, int64_t cp, int64_t co, int64_t kt,
                                      int64_t kh, int64_t kw) {
  if (kw != 1 && kw != 3) return 0;  // conv3d_igemm refuses it
  const int splits = splits_for(ti, hp, wp, cp, co, kt, kh, kw);
  return splits > 1 ? splits * (ti - kt + 1) * (hp - kh + 1) * (wp - kw + 1) * co : 0;
}

void conv3d_igemm(float* out, const void* padded, const void* packed_weight, const float* bias,
                  const float* residual, int64_t ti, int64_t hp, int64_t wp, int64_t cp, int64_t co, int64_t cop,
                  int64_t kt, int64_t kh, int64_t kw, float* workspace, cudaStream_t stream) {
  const int64_t to = ti - kt + 1, ho = hp - kh + 1, wo = wp - kw + 1;
  if (to <= 0 || ho <= 0 || wo <= 0 || co == 0) return;
  if ((kw != 1 && kw != 3) || cp % kConvChannelStep != 0 || cop % tile_n(co) != 0 ||
      ti * hp * wp > (int64_t{1} << 31) - kTileM - (int64_t{1} << 24))
    throw std::invalid_argument("cuda conv3d: kernel " + std::to_string(kt) + "x" + std::to_string(kh) + "x" +
                                std::to_string(kw) + " over " + std::to_string(ti * hp * wp) +
                                " pixels is outside what the implicit-GEMM kernel takes");
  // Flat positions up to the last real output; the rows past it in each tile read zeros (cp.async zero-fill).
  const int m_total = static_cast<int>((to - 1) * hp * wp + (ho - 1) * wp + wo);
  const auto* in = static_cast<const bf16*>(padded);
  const auto* w = static_cast<const bf16*>(packed_weight);
  const int in_rows = static_cast<int>(ti * hp * wp), tap_rows = static_cast<int>(kt * kh);
  const int64_t out_elements = to * ho * wo * co;
  const int splits = workspace ? splits_for(ti, hp, wp, cp, co, kt, kh, kw) : 1;
  const ConvCall call{out,     in,      w,       bias,    residual, int(kh), tap_rows, int(cp),
                      int(co), int(cop), in_rows, m_total, int(hp),  int(wp), int(ho),  int(wo),
                      splits,  workspace, out_elements};
  if (kw == 3)
    launch_for_width<3>(tile_n(co), call, stream);
  else
    launch_for_width<1>(tile_n(co), call, stream);
}

}  // namespace ditrun::cuda

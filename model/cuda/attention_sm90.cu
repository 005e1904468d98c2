// FlashAttention-3-style forward attention for Hopper (sm_90a), written for this project from the PTX ISA and the
// published design (Shah et al. 2024): warp specialisation, TMA + mbarrier pipelines, wgmma, intra-warpgroup
// overlap of softmax with the next Q·Kᵀ, and ping-pong scheduling of the two consumer warp groups.
//
// CTA = 3 warp groups (384 threads), 128 query rows of one head per tile, persistent over tiles:
//   WG0, warp 0: producer. Lane 0 issues TMA loads of Q (128×128, two 64-column boxes), and of K and V tiles
//                (kBlockN×128 each, two boxes) into a kStages-deep ring; mbarriers with transaction counts say
//                when a stage is full, consumer arrivals say when it is empty. The other three warps exit. The
//                warp group gives registers back (setmaxnreg.dec 24).
//   WG1, WG2:    consumers (setmaxnreg.inc 240), rows 0-63 and 64-127 of the tile. Per key block n (walked from
//                the last block, the only one that can be partial and need masking, down to 0):
//                  S = Q·K[n]ᵀ          wgmma m64n{kBlockN}k16 ×8, A and B from shared memory (K-major, 128B swizzle)
//                  O += P[n+1]·V[n+1]   wgmma m64n128k16 ×kBlockN/16, A = P from registers, B = V MN-major
//                  both issued back to back, then softmax of S runs while P·V is still in the tensor cores.
//                A named-barrier ping-pong makes the two warp groups take turns issuing their GEMMs (a tile's first
//                Q·Kᵀ and last P·V included), so one group's softmax and epilogue overlap the other's GEMMs.
//                Each group stores its 64 rows of O: at the key tile of 128 into a shared-memory staging buffer,
//                from which WG0's warp 1 (the store warp) sends it on with TMA stores; otherwise (no room next to
//                the 176- and 192-key stages) straight from registers.
// Shared memory layout (1024-byte aligned; every 64-column box is rows × 128 B with the TMA 128-byte swizzle, which
// is the wgmma 128B-swizzle canonical layout): Q (two buffers at tile 128) | K stages | V stages | O staging (tile
// 128) | mbarriers.
#include "model/cuda/attention_sm90.h"

#include <cuda.h>  // CUtensorMap and its enums only: the encoder comes from cudaGetDriverEntryPointByVersion
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"

namespace ditrun::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kHeadDim = 128;
constexpr int kBlockM = 128;  // query rows per tile (64 per consumer warp group)
constexpr int kStages = 2;
constexpr int kThreads = 384;
constexpr int kConsumerThreads = 256;
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
// Named barriers (0 is __syncthreads).
constexpr int kBarSchedule = 2;       // +0 / +1: whose turn it is to issue GEMMs (consumer WG 0 / 1), 256 each
constexpr uint64_t kEvictFirst = 0x12F0000000000000ull;  // L2 cache hints (CUTLASS's CacheHintSm90 values)
constexpr uint64_t kEvictLast = 0x14F0000000000000ull;

struct Params {
  CUtensorMap tq, tk, tv;  // 2D views [rows, heads·128] of q, k, v; box 64 columns × (128 | kBlockN) rows
  CUtensorMap to;          // the same view of out, box 64 columns × 64 rows (staged stores only)
  int staged_store;        // out goes through shared memory and TMA stores (Layout::kStagedStore, out set and
                           // 16-byte aligned, as TMA needs)
  bf16* out;
  float* out_f32;
  float* lse;
  int lq, keys, heads;
  int m_blocks, n_blocks, num_tiles;
  float scale_log2;  // scale · log2(e)
  float scale;
};

// ---- PTX wrappers ----

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase with the given parity has completed. A fresh barrier is in phase 0, so waiting on parity 1
// returns at once (the producer's first pass over the empty barriers).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1,
                                            uint64_t cache_hint) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "l"(cache_hint)
      : "memory");
}
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, uint32_t src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c0), "r"(c1)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until all but the newest N committed bulk stores have read their shared memory (it may be written again).
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
// Until the committed bulk stores are complete (before the CTA's shared memory goes away).
__device__ __forceinline__ void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// Orders this thread's generic-proxy shared-memory writes before later async-proxy (TMA) reads of them.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads/writes of wgmma registers across the (register-less) wgmma fence/wait asm.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// wgmma shared-memory matrix descriptor, 128-byte swizzle (layout type 1 in bits 62-63), base offset 0 (every
// swizzle atom starts 1024-byte aligned). Address, leading and stride byte offsets are stored >> 4 in 14 bits.
//   K-major (Q, K):  rows of 64 bf16 = 128 B, 8-row atoms of 1024 B: SBO = 1024; LBO unused for swizzled K-major
//                    (1 by convention). A k-step of 16 elements inside the 128-byte row is start + 32 B.
//   MN-major (V as B of P·V, N = head dim contiguous): LBO = distance between the two 64-column boxes (the next
//                    64 N values), SBO = 1024 (the next 8 keys); a k-step of 16 keys is start + 16·128 B.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>((lbo_bytes & 0x3FFFF) >> 4) << 16) |
         (static_cast<uint64_t>((sbo_bytes & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// ---- wgmma wrappers (one asm operand per accumulator register, written out in full) ----
// SS: D[64xN] (+)= A[64x16]·B[16xN] with A and B K-major in shared memory; scale_d = 0 overwrites D.
// RS_TB: D[64xN] (+)= A[64x16]·B[16xN] with A in registers (accumulator layout, bf16 pairs) and B MN-major
// ("transposed": N contiguous) in shared memory.

__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n}\n"
      :
        "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_m64n176k16_ss(float (&d)[88], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
      " %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
      " %80, %81, %82, %83, %84, %85, %86, %87}, "
      "%88, %89, p, 1, 1, 0, 0;\n}\n"
      :
        "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_m64n192k16_ss(float (&d)[96], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
      " %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
      " %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, "
      "%96, %97, p, 1, 1, 0, 0;\n}\n"
      :
        "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_m64n128k16_rs_tb(float (&d)[64], uint32_t a0, uint32_t a1, uint32_t a2,
                                                       uint32_t a3, uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      :
        "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc_b), "r"(scale_d));
}

template <int N>
struct WgmmaQK;
template <>
struct WgmmaQK<128> {
  static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b, int scale_d) {
    wgmma_m64n128k16_ss(d, a, b, scale_d);
  }
};
template <>
struct WgmmaQK<176> {
  static __device__ __forceinline__ void run(float (&d)[88], uint64_t a, uint64_t b, int scale_d) {
    wgmma_m64n176k16_ss(d, a, b, scale_d);
  }
};
template <>
struct WgmmaQK<192> {
  static __device__ __forceinline__ void run(float (&d)[96], uint64_t a, uint64_t b, int scale_d) {
    wgmma_m64n192k16_ss(d, a, b, scale_d);
  }
};

// Shared-memory plan for one key-tile width.
template <int kBlockN>
struct Layout {
  static constexpr uint32_t kQHalf = kBlockM * 128;         // one 64-column box of Q: 128 rows × 128 B
  static constexpr uint32_t kQBytes = 2 * kQHalf;
  static constexpr uint32_t kKVHalf = kBlockN * 128;        // one 64-column box of a K or V tile
  static constexpr uint32_t kKVBytes = 2 * kKVHalf;
  // mbarriers: q_full[2], q_empty[2], o_full[2], o_empty[2], k_full[S], k_empty[S], v_full[S], v_empty[S]
  static constexpr uint32_t kBarrierBytes = 8 * (8 + 4 * kStages);
  static constexpr uint32_t kKVStageBytes = 2 * kStages * kKVBytes;
  // Output staging, one 64-row half per consumer warp group (two 64-column boxes each), where it fits: the key
  // tile of 128 (cross-attention), whose few key blocks per tile make the direct register → global stores 22% of
  // the kernel (H100, 40 × 32760 × 512 keys: 0.661 ms, 0.516 without the stores).
  static constexpr uint32_t kOHalf = 64 * 128;              // one 64-column box of a group's 64 rows
  static constexpr uint32_t kOGroupBytes = 2 * kOHalf;
  static constexpr bool kStagedStore =
      kQBytes + kKVStageBytes + 2 * kOGroupBytes + kBarrierBytes + 1024 <= 227 * 1024;
  static constexpr uint32_t kOBytes = kStagedStore ? 2 * kOGroupBytes : 0;
  // A second Q buffer where that still fits (tile 128): the next tile's Q loads while this one computes.
  static constexpr int kQBuffers = 2 * kQBytes + kKVStageBytes + kOBytes + kBarrierBytes + 1024 <= 227 * 1024 ? 2 : 1;
  static constexpr uint32_t kQ = 0;
  static constexpr uint32_t kK = kQ + kQBuffers * kQBytes;
  static constexpr uint32_t kV = kK + kStages * kKVBytes;
  static constexpr uint32_t kO = kV + kStages * kKVBytes;
  static constexpr uint32_t kBarriers = kO + kOBytes;
  static constexpr uint32_t kBytes = kBarriers + kBarrierBytes;
  static constexpr uint32_t kDynamicBytes = kBytes + 1024;  // slack to align the base to 1024
  static_assert(kKVHalf % 1024 == 0 && kQHalf % 1024 == 0, "swizzle atoms must stay 1024-byte aligned");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "wgmma N / TMA box limits");
  static_assert(kDynamicBytes <= 227 * 1024, "more shared memory than an sm_90 CTA may have");
};

// S = Q·Kᵀ for this warp group's 64 rows: 8 k-steps of 16 over the head dim (4 inside each 64-column box).
template <int kBlockN>
__device__ __forceinline__ void gemm_qk(float (&s)[kBlockN / 2], uint32_t q_rows, uint32_t k_tile) {
  using L = Layout<kBlockN>;
  fence_regs(s);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    const uint32_t in_box = (kk & 3) * 32, box = kk >> 2;
    const uint64_t da = smem_desc(q_rows + box * L::kQHalf + in_box, 16, 1024);
    const uint64_t db = smem_desc(k_tile + box * L::kKVHalf + in_box, 16, 1024);
    WgmmaQK<kBlockN>::run(s, da, db, kk > 0 ? 1 : 0);
  }
  wgmma_commit();
  fence_regs(s);
}

// O += P·V: kBlockN/16 k-steps of 16 keys; P chunk c is registers p[4c..4c+3] (the S accumulator layout).
template <int kBlockN>
__device__ __forceinline__ void gemm_pv(float (&o)[64], uint32_t (&p)[kBlockN / 4], uint32_t v_tile) {
  using L = Layout<kBlockN>;
  fence_regs(o);
  fence_regs(p);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t db = smem_desc(v_tile + kk * 16 * 128, L::kKVHalf, 1024);
    wgmma_m64n128k16_rs_tb(o, p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3], db, 1);
  }
  wgmma_commit();
  fence_regs(o);
  fence_regs(p);
}

// Online softmax over one S tile held in the wgmma accumulator layout: element i of a thread is row g + 8·((i/2)%2)
// of its warp's 16 rows and column 8·(i/4) + 2·(lane%4) + i%2. Scores become p = exp2(s·scale_log2 − m·scale_log2)
// in place; m is the running row max of the raw scores, l this thread's share of the row sums (the quad adds the
// four shares at the end), alpha the factor the accumulated O must be multiplied by.
template <int kBlockN, bool kFirst>
__device__ __forceinline__ void softmax_step(float (&s)[kBlockN / 2], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                             float scale_log2) {
  constexpr int kN = kBlockN / 2;
  float mx[2][2];  // [row][two independent chains]
#pragma unroll
  for (int r = 0; r < 2; ++r) mx[r][0] = mx[r][1] = kFirst ? -INFINITY : m[r];
#pragma unroll
  for (int i = 0; i < kN; ++i) mx[(i >> 1) & 1][(i >> 2) & 1] = fmaxf(mx[(i >> 1) & 1][(i >> 2) & 1], s[i]);
  float row_max[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float v = fmaxf(mx[r][0], mx[r][1]);
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
    row_max[r] = v;
    alpha[r] = kFirst ? 1.f : fast_exp2((m[r] - v) * scale_log2);
    m[r] = v;
  }
  const float neg_scaled_max[2] = {-row_max[0] * scale_log2, -row_max[1] * scale_log2};
  float sum[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int r = (i >> 1) & 1;
    s[i] = fast_exp2(fmaf(s[i], scale_log2, neg_scaled_max[r]));
    sum[r][(i >> 2) & 1] += s[i];
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) l[r] = (kFirst ? 0.f : l[r] * alpha[r]) + (sum[r][0] + sum[r][1]);
}

// P (bf16 A fragments of the P·V wgmma) from the probabilities in S: chunk c of 16 keys = S n-tiles 2c and 2c+1.
template <int kBlockN>
__device__ __forceinline__ void convert_p(const float (&s)[kBlockN / 2], uint32_t (&p)[kBlockN / 4]) {
#pragma unroll
  for (int j = 0; j < kBlockN / 4; ++j) p[j] = pack_bf16(s[2 * j], s[2 * j + 1]);
}

template <int kBlockN>
__global__ void __launch_bounds__(kThreads, 1) attention_sm90_kernel(const __grid_constant__ Params prm) {
  using L = Layout<kBlockN>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_q = base + L::kQ, s_k = base + L::kK, s_v = base + L::kV, s_out = base + L::kO;
  const uint32_t bars = base + L::kBarriers;
  auto bar_q_full = [&](int b) { return bars + 8u * b; };
  auto bar_q_empty = [&](int b) { return bars + 8u * (2 + b); };
  auto bar_o_full = [&](int cg) { return bars + 8u * (4 + cg); };   // a consumer group's O is in its buffer
  auto bar_o_empty = [&](int cg) { return bars + 8u * (6 + cg); };  // its TMA store has read the buffer
  auto bar_k_full = [&](int s) { return bars + 8u * (8 + s); };
  auto bar_k_empty = [&](int s) { return bars + 8u * (8 + kStages + s); };
  auto bar_v_full = [&](int s) { return bars + 8u * (8 + 2 * kStages + s); };
  auto bar_v_empty = [&](int s) { return bars + 8u * (8 + 3 * kStages + s); };

  const int warp = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 32, 0);
  const int lane = threadIdx.x % 32;
  const int wg = warp / 4;

  if (threadIdx.x == 0) {
    for (int b = 0; b < 2; ++b) {
      mbar_init(bar_q_full(b), 1);
      mbar_init(bar_q_empty(b), kConsumerThreads);
      mbar_init(bar_o_full(b), kConsumerThreads / 2);
      mbar_init(bar_o_empty(b), 1);
    }
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bar_k_full(s), 1);
      mbar_init(bar_k_empty(s), kConsumerThreads);
      mbar_init(bar_v_full(s), 1);
      mbar_init(bar_v_empty(s), kConsumerThreads);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int n_blocks = prm.n_blocks;
  const bool staged = L::kStagedStore && prm.staged_store;

  if (wg == 0) {
    // ---------------- producer ----------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (warp == 1 && staged) {
      // ---------------- output store warp ----------------
      // Lane 0 takes each consumer group's finished O from its staging buffer to global memory with TMA stores,
      // so the consumer groups never wait on a store.
      if (lane != 0) return;
      tma_prefetch_descriptor(&prm.to);
      int local_tile = 0;
      for (int tile = blockIdx.x; tile < prm.num_tiles; tile += gridDim.x, ++local_tile) {
        const int head = tile / prm.m_blocks, m_block = tile - head * prm.m_blocks;
        for (int cg = 0; cg < 2; ++cg) {
          const uint32_t s_o = s_out + cg * L::kOGroupBytes;
          mbar_wait(bar_o_full(cg), local_tile & 1);
          const int row = m_block * kBlockM + cg * 64;
          tma_store_2d(&prm.to, s_o, head * kHeadDim, row);
          tma_store_2d(&prm.to, s_o + L::kOHalf, head * kHeadDim + 64, row);
          bulk_commit();
        }
        bulk_wait_read<1>();  // group 0's store has read its buffer
        mbar_arrive(bar_o_empty(0));
        bulk_wait_read<0>();
        mbar_arrive(bar_o_empty(1));
      }
      bulk_wait();  // shared memory must outlive the stores reading it
      return;
    }
    if (warp != 0) return;
    if (lane == 0) {
      tma_prefetch_descriptor(&prm.tq);
      tma_prefetch_descriptor(&prm.tk);
      tma_prefetch_descriptor(&prm.tv);
    }
    uint32_t it = 0;  // key blocks issued so far (over all tiles): stage it % kStages, phase (it / kStages) & 1
    auto load_k = [&](uint32_t i, int col, int n) {
      const int s = i % kStages;
      mbar_wait(bar_k_empty(s), ((i / kStages) & 1) ^ 1);
      mbar_arrive_expect_tx(bar_k_full(s), L::kKVBytes);
      const uint32_t dst = s_k + s * L::kKVBytes;
      tma_load_2d(dst, &prm.tk, bar_k_full(s), col, n * kBlockN, kEvictLast);
      tma_load_2d(dst + L::kKVHalf, &prm.tk, bar_k_full(s), col + 64, n * kBlockN, kEvictLast);
    };
    auto load_v = [&](uint32_t i, int col, int n) {
      const int s = i % kStages;
      mbar_wait(bar_v_empty(s), ((i / kStages) & 1) ^ 1);
      mbar_arrive_expect_tx(bar_v_full(s), L::kKVBytes);
      const uint32_t dst = s_v + s * L::kKVBytes;
      tma_load_2d(dst, &prm.tv, bar_v_full(s), col, n * kBlockN, kEvictLast);
      tma_load_2d(dst + L::kKVHalf, &prm.tv, bar_v_full(s), col + 64, n * kBlockN, kEvictLast);
    };
    int local_tile = 0;
    for (int tile = blockIdx.x; tile < prm.num_tiles; tile += gridDim.x, ++local_tile) {
      const int head = tile / prm.m_blocks, m_block = tile - head * prm.m_blocks;
      const int col = head * kHeadDim;
      if (lane == 0) {
        load_k(it, col, n_blocks - 1);
        // Q buffer qb's f-th fill waits for both consumer groups to be done with its (f-1)-th.
        const int qb = local_tile % L::kQBuffers;
        const uint32_t fill = local_tile / L::kQBuffers, dst = s_q + qb * L::kQBytes;
        mbar_wait(bar_q_empty(qb), (fill & 1) ^ 1);
        mbar_arrive_expect_tx(bar_q_full(qb), L::kQBytes);
        tma_load_2d(dst, &prm.tq, bar_q_full(qb), col, m_block * kBlockM, kEvictFirst);
        tma_load_2d(dst + L::kQHalf, &prm.tq, bar_q_full(qb), col + 64, m_block * kBlockM, kEvictFirst);
        // K runs one block ahead of V: consumer step j needs K of block j and V of block j-1.
        for (int j = 1; j < n_blocks; ++j) {
          load_k(it + j, col, n_blocks - 1 - j);
          load_v(it + j - 1, col, n_blocks - j);
        }
        load_v(it + n_blocks - 1, col, 0);
      }
      __syncwarp();
      it += n_blocks;
    }
    return;
  }

  // ---------------- consumers ----------------
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
  const int cg = wg - 1;                    // consumer group: tile rows 64·cg .. 64·cg + 63
  const int warp_in_group = warp % 4;
  const int g = lane / 4, t = lane % 4;
  const float scale_log2 = prm.scale_log2;
  const int valid_in_last = prm.keys - (n_blocks - 1) * kBlockN;  // 1 .. kBlockN

  if (cg == 0) named_arrive(kBarSchedule + 0, kConsumerThreads);  // group 0 issues first

  float s[kBlockN / 2];
  uint32_t p[kBlockN / 4];
  float o[64];
  uint32_t it = 0;
  int local_tile = 0;
  for (int tile = blockIdx.x; tile < prm.num_tiles; tile += gridDim.x, ++local_tile) {
    const int head = tile / prm.m_blocks, m_block = tile - head * prm.m_blocks;
    float m[2], l[2], alpha[2];

    const int qb = local_tile % L::kQBuffers;
    const uint32_t q_rows = s_q + qb * L::kQBytes + cg * 64 * 128;  // this group's 64 rows inside each Q box
    mbar_wait(bar_q_full(qb), (local_tile / L::kQBuffers) & 1);

    // First (last-in-sequence, maybe partial) key block: S, mask, softmax; no P·V yet.
    {
      const int sk = it % kStages;
      mbar_wait(bar_k_full(sk), (it / kStages) & 1);
      named_sync(kBarSchedule + cg, kConsumerThreads);
      gemm_qk<kBlockN>(s, q_rows, s_k + sk * L::kKVBytes);
      named_arrive(kBarSchedule + (1 - cg), kConsumerThreads);
      wgmma_wait<0>();
      fence_regs(s);
      mbar_arrive(bar_k_empty(sk));
      if (n_blocks == 1) mbar_arrive(bar_q_empty(qb));
      if (valid_in_last < kBlockN) {
#pragma unroll
        for (int i = 0; i < kBlockN / 2; ++i)
          if (8 * (i >> 2) + 2 * t + (i & 1) >= valid_in_last) s[i] = -INFINITY;
      }
      softmax_step<kBlockN, true>(s, m, l, alpha, scale_log2);
      convert_p<kBlockN>(s, p);
    }
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.f;

    for (int j = 1; j < n_blocks; ++j) {
      const uint32_t ik = it + j, iv = it + j - 1;
      const int sk = ik % kStages, sv = iv % kStages;
      mbar_wait(bar_k_full(sk), (ik / kStages) & 1);
      named_sync(kBarSchedule + cg, kConsumerThreads);
      gemm_qk<kBlockN>(s, q_rows, s_k + sk * L::kKVBytes);
      mbar_wait(bar_v_full(sv), (iv / kStages) & 1);
      gemm_pv<kBlockN>(o, p, s_v + sv * L::kKVBytes);
      named_arrive(kBarSchedule + (1 - cg), kConsumerThreads);
      wgmma_wait<1>();  // S is ready; P·V may still run
      fence_regs(s);
      mbar_arrive(bar_k_empty(sk));
      if (j == n_blocks - 1) mbar_arrive(bar_q_empty(qb));
      softmax_step<kBlockN, false>(s, m, l, alpha, scale_log2);
      wgmma_wait<0>();  // P·V done: V's stage and the P registers are free, O may be rescaled
      fence_regs(o);
      fence_regs(p);
      mbar_arrive(bar_v_empty(sv));
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
      convert_p<kBlockN>(s, p);
    }
    {
      const uint32_t iv = it + n_blocks - 1;
      const int sv = iv % kStages;
      mbar_wait(bar_v_full(sv), (iv / kStages) & 1);
      named_sync(kBarSchedule + cg, kConsumerThreads);
      gemm_pv<kBlockN>(o, p, s_v + sv * L::kKVBytes);
      named_arrive(kBarSchedule + (1 - cg), kConsumerThreads);
      wgmma_wait<0>();
      fence_regs(o);
      fence_regs(p);
      mbar_arrive(bar_v_empty(sv));
    }
    it += n_blocks;

    // Epilogue: finish the row sums across the quad, normalise, store (rows past lq are skipped).
    const int64_t row0 = static_cast<int64_t>(m_block) * kBlockM + cg * 64 + warp_in_group * 16 + g;
    const int64_t token_stride = static_cast<int64_t>(prm.heads) * kHeadDim;
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
      inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
    }
    if (staged) {
      // bf16 O → this group's staging buffer in the TMA 128-byte-swizzle layout (16-byte chunk c of row r at
      // chunk c ^ (r % 8)); the store warp sends it on (the TMA store skips rows past lq).
      const uint32_t s_o = s_out + cg * L::kOGroupBytes;
      mbar_wait(bar_o_empty(cg), (local_tile & 1) ^ 1);  // the previous tile's store has read the buffer
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint32_t row = warp_in_group * 16 + g + 8 * r;
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
          st_shared_u32(s_o + (jj >> 3) * L::kOHalf + row * 128 + (((jj & 7) ^ (row & 7)) << 4) + 4 * t,
                        pack_bf16(o[4 * jj + 2 * r] * inv[r], o[4 * jj + 2 * r + 1] * inv[r]));
      }
      fence_proxy_async_smem();  // the writes, then the arrival, before the store warp's TMA reads them
      mbar_arrive(bar_o_full(cg));
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = row0 + 8 * r;
      if (row >= prm.lq) continue;
      const int64_t offset = row * token_stride + static_cast<int64_t>(head) * kHeadDim + 2 * t;
      if (prm.out && !staged) {
        bf16* dst = prm.out + offset;
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
          *reinterpret_cast<uint32_t*>(dst + 8 * jj) =
              pack_bf16(o[4 * jj + 2 * r] * inv[r], o[4 * jj + 2 * r + 1] * inv[r]);
      }
      if (prm.out_f32) {
        float* dst = prm.out_f32 + offset;
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
          *reinterpret_cast<float2*>(dst + 8 * jj) =
              make_float2(o[4 * jj + 2 * r] * inv[r], o[4 * jj + 2 * r + 1] * inv[r]);
      }
      if (prm.lse && t == 0)
        prm.lse[static_cast<int64_t>(head) * prm.lq + row] =
            l[r] > 0.f ? m[r] * prm.scale + logf(l[r]) : -INFINITY;
    }
  }
}

// No valid key: out = 0, lse = -inf (what the online softmax would give with l = 0).
__global__ void empty_attention_kernel(bf16* out, float* out_f32, float* lse, int64_t rows, int64_t lse_count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * kHeadDim; i += stride) {
    if (out) out[i] = __float2bfloat16_rn(0.f);
    if (out_f32) out_f32[i] = 0.f;
    if (lse && i < lse_count) lse[i] = -INFINITY;
  }
}

// ---- host side ----

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn encode_tiled() {
  static EncodeTiledFn fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult status{};
    DITRUN_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                                       &status));
    if (status != cudaDriverEntryPointSuccess || !ptr)
      throw std::runtime_error("cuda attention sm90: the driver has no cuTensorMapEncodeTiled");
    fn = reinterpret_cast<EncodeTiledFn>(ptr);
  });
  return fn;
}

// 2D view of a [rows, heads, 128] bf16 tensor as [rows][heads·128], box 64 columns × box_rows rows, 128-byte
// swizzle; rows past `rows` read as zeros.
CUtensorMap make_map(const void* ptr, int64_t rows, int heads, int box_rows) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(heads) * kHeadDim, static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(heads) * kHeadDim * sizeof(bf16)};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(ptr), dims, strides,
                                    box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("cuda attention sm90: cuTensorMapEncodeTiled failed (" + std::to_string(r) + ")");
  return map;
}

template <int kBlockN>
void launch(Params& prm, const void* q, const void* k, const void* v, cudaStream_t stream) {
  using L = Layout<kBlockN>;
  prm.tq = make_map(q, prm.lq, prm.heads, kBlockM);
  prm.tk = make_map(k, prm.keys, prm.heads, kBlockN);
  prm.tv = make_map(v, prm.keys, prm.heads, kBlockN);
  prm.staged_store = L::kStagedStore && prm.out != nullptr && reinterpret_cast<uintptr_t>(prm.out) % 16 == 0;
  if (prm.staged_store) prm.to = make_map(prm.out, prm.lq, prm.heads, 64);
  prm.n_blocks = (prm.keys + kBlockN - 1) / kBlockN;
  int device = 0, sms = 0;
  DITRUN_CUDA_CHECK(cudaGetDevice(&device));
  DITRUN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DITRUN_CUDA_CHECK(cudaFuncSetAttribute(attention_sm90_kernel<kBlockN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(L::kDynamicBytes)));
  const int grid = prm.num_tiles < sms ? prm.num_tiles : sms;
  attention_sm90_kernel<kBlockN><<<grid, kThreads, L::kDynamicBytes, stream>>>(prm);
  DITRUN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void attention_bf16_sm90_ex(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq,
                            int64_t lk, int64_t kv_valid, int heads, int d, float scale,
                            const AttentionSm90Options& options, cudaStream_t stream) {
  if (d != kHeadDim)
    throw std::invalid_argument("cuda attention sm90: head_dim " + std::to_string(d) + " (only 128)");
  if (!(scale > 0.f)) throw std::invalid_argument("cuda attention sm90: scale must be > 0");
  if (heads <= 0 || lq < 0 || lk < 0) throw std::invalid_argument("cuda attention sm90: bad shape");
  if (!out && !options.out_f32) throw std::invalid_argument("cuda attention sm90: no output");
  for (const void* p : {q, k, v})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
      throw std::invalid_argument("cuda attention sm90: q, k and v must be 16-byte aligned");
  const int64_t keys = kv_valid < lk ? kv_valid : lk;
  if (lq == 0) return;
  if (lq > INT32_MAX - kBlockM || keys > INT32_MAX - 256)
    throw std::invalid_argument("cuda attention sm90: sequence too long");
  if (keys <= 0) {
    const int64_t rows = lq * heads;
    const int blocks = static_cast<int>(std::min<int64_t>((rows * kHeadDim + 255) / 256, 4096));
    empty_attention_kernel<<<blocks, 256, 0, stream>>>(static_cast<bf16*>(out), options.out_f32, lse, rows,
                                                        lse ? rows : 0);
    DITRUN_CUDA_CHECK(cudaGetLastError());
    return;
  }
  Params prm{};
  prm.out = static_cast<bf16*>(out);
  prm.out_f32 = options.out_f32;
  prm.lse = lse;
  prm.lq = static_cast<int>(lq);
  prm.keys = static_cast<int>(keys);
  prm.heads = heads;
  prm.m_blocks = static_cast<int>((lq + kBlockM - 1) / kBlockM);
  const int64_t tiles = static_cast<int64_t>(prm.m_blocks) * heads;
  if (tiles > INT32_MAX) throw std::invalid_argument("cuda attention sm90: too many tiles");
  prm.num_tiles = static_cast<int>(tiles);
  prm.scale = scale;
  prm.scale_log2 = scale * 1.4426950408889634f;
  const int block_n = options.block_n != 0 ? options.block_n : attention_sm90_default_block_n(keys);
  switch (block_n) {
    case 128: launch<128>(prm, q, k, v, stream); break;
    case 176: launch<176>(prm, q, k, v, stream); break;
    case 192: launch<192>(prm, q, k, v, stream); break;
    default:
      throw std::invalid_argument("cuda attention sm90: block_n " + std::to_string(block_n) + " (128, 176 or 192)");
  }
}

// Key tile: 176 (FlashAttention-3's choice for head dim 128) unless the keys are few, where 128 wastes less on the
// masked tail (512 text keys: 4 full tiles of 128 against 3 tiles of 176 with 16 masked keys).
int attention_sm90_default_block_n(int64_t keys) { return keys <= 1024 ? 128 : 176; }

void attention_bf16_sm90(void* out, float* lse, const void* q, const void* k, const void* v, int64_t lq, int64_t lk,
                         int64_t kv_valid, int heads, int d, float scale, cudaStream_t stream) {
  attention_bf16_sm90_ex(out, lse, q, k, v, lq, lk, kv_valid, heads, d, scale, AttentionSm90Options{}, stream);
}

}  // namespace ditrun::cuda

// The Hopper attention kernel (model/cuda/attention_sm90) against
//   (a) an fp32 reference computed on the GPU (one block per query row, scores in shared memory) at small shapes:
//       lq / lk off the tile sizes, lk < 128, kv_valid < lk (the keys past kv_valid hold NaN, which must never be
//       read), 1..40 heads, large logits, several tiles per CTA (persistent loop), every key tile (128/176/192),
//       bf16 and f32 outputs, the bf16 output staged through shared memory and TMA stores (key tile 128) or not
//       (an unaligned out); and that nothing past the last query row is written;
//   (b) the existing attention_bf16 kernel and the fp32 reference on sampled rows at the full-size shapes
//       (40 heads × 32760 tokens, and cross-attention over 512 keys), plus a bitwise rerun (races).
// Prints one line per case and exits non-zero if anything is off.
//   attention_sm90_check [--quick]   (--quick skips (b))
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "model/cuda/attention.h"
#include "model/cuda/attention_sm90.h"

namespace {

using bf16 = __nv_bfloat16;

#define CHECK_CUDA(call)                                                                              \
  do {                                                                                                \
    cudaError_t e_ = (call);                                                                          \
    if (e_ != cudaSuccess) {                                                                          \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #call); \
      std::exit(2);                                                                                   \
    }                                                                                                 \
  } while (0)

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Uniform in [-amp, amp) from a hash of (seed, index); rows ≥ nan_from_row (of `row_elems` elements) are NaN.
__global__ void fill_random(bf16* p, int64_t n, uint64_t seed, float amp, int64_t row_elems, int64_t nan_from_row) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u = hash32(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i)) * (1.0f / 4294967296.0f);
    p[i] = (i / row_elems >= nan_from_row) ? __float2bfloat16_rn(NAN) : __float2bfloat16_rn((2.f * u - 1.f) * amp);
  }
}

template <typename T>
__global__ void fill_value(T* p, int64_t n, T v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

// fp32 reference for query rows row_begin + blockIdx.x, head blockIdx.y; 128 threads (one per output column).
// out_ref [rows, heads, 128] (rows counted from row_begin), lse_ref [heads, rows].
__global__ void reference_attention(const bf16* q, const bf16* k, const bf16* v, float* out_ref, float* lse_ref,
                                    int64_t row_begin, int64_t rows, int64_t keys, int heads, float scale) {
  extern __shared__ float sh[];
  float* qs = sh;           // 128
  float* red = sh + 128;    // 32
  float* sc = sh + 160;     // keys
  const int tid = threadIdx.x;
  const int64_t r = blockIdx.x, row = row_begin + r;
  const int head = blockIdx.y;
  const int64_t ts = static_cast<int64_t>(heads) * 128;
  qs[tid] = __bfloat162float(q[row * ts + head * 128 + tid]);
  __syncthreads();
  float mx = -INFINITY;
  for (int64_t key = tid; key < keys; key += 128) {
    const bf16* kr = k + key * ts + head * 128;
    float s = 0.f;
    for (int d = 0; d < 128; ++d) s += qs[d] * __bfloat162float(kr[d]);
    s *= scale;
    sc[key] = s;
    mx = fmaxf(mx, s);
  }
  for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (tid % 32 == 0) red[tid / 32] = mx;
  __syncthreads();
  mx = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
  __syncthreads();
  float sum = 0.f;
  for (int64_t key = tid; key < keys; key += 128) {
    const float e = expf(sc[key] - mx);
    sc[key] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (tid % 32 == 0) red[4 + tid / 32] = sum;
  __syncthreads();
  sum = red[4] + red[5] + red[6] + red[7];
  float acc = 0.f;
  for (int64_t key = 0; key < keys; ++key) acc += sc[key] * __bfloat162float(v[key * ts + head * 128 + tid]);
  out_ref[(r * heads + head) * 128 + tid] = acc / sum;
  if (tid == 0) lse_ref[static_cast<int64_t>(head) * rows + r] = mx + logf(sum);
}

int grid_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 8192)); }

template <typename T>
std::vector<T> to_host(const T* d, int64_t n) {
  std::vector<T> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

float bf2f(bf16 x) {
  uint16_t b;
  std::memcpy(&b, &x, 2);
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Errors {
  double max_abs = 0, sum_sq_err = 0, sum_sq_ref = 0, lse_max_abs = 0;
  int64_t bad = 0, nonfinite = 0;
  double rel_l2() const { return sum_sq_ref > 0 ? std::sqrt(sum_sq_err / sum_sq_ref) : std::sqrt(sum_sq_err); }
};

// out tolerance per element: |got − ref| ≤ 1e-2 + 2e-2·|ref| (bf16 P and output); lse: 2e-3 + 1e-4·|ref|.
void compare_out(Errors& e, double got, double ref) {
  if (!std::isfinite(got)) {
    ++e.nonfinite;
    ++e.bad;
    return;
  }
  const double d = std::fabs(got - ref);
  e.max_abs = std::max(e.max_abs, d);
  e.sum_sq_err += d * d;
  e.sum_sq_ref += ref * ref;
  if (d > 1e-2 + 2e-2 * std::fabs(ref)) ++e.bad;
}
void compare_lse(Errors& e, double got, double ref) {
  if (std::isinf(ref) && got == ref) return;
  if (!std::isfinite(got)) {
    ++e.nonfinite;
    ++e.bad;
    return;
  }
  const double d = std::fabs(got - ref);
  e.lse_max_abs = std::max(e.lse_max_abs, d);
  if (d > 2e-3 + 1e-4 * std::fabs(ref)) ++e.bad;
}

int failures = 0;

void report(const std::string& name, const Errors& e, double rel_l2_limit, bool extra_ok = true,
            const char* extra = "") {
  const bool ok = e.bad == 0 && e.rel_l2() <= rel_l2_limit && extra_ok;
  std::printf("%-4s %-62s out max|err| %.2e rel-L2 %.2e  lse max|err| %.2e  bad %lld nonfinite %lld %s\n",
              ok ? "ok" : "FAIL", name.c_str(), e.max_abs, e.rel_l2(), e.lse_max_abs, static_cast<long long>(e.bad),
              static_cast<long long>(e.nonfinite), extra);
  std::fflush(stdout);
  if (!ok) ++failures;
}

struct Case {
  int64_t lq, lk, kv;
  int heads;
  float scale;  // 0: 1/sqrt(128)
  float q_amp;  // q uniform in [-q_amp, q_amp); k, v in [-1, 1)
};

// out_shift: out starts this many bf16 past a 256-byte boundary (2: not 16-byte aligned, so no TMA store).
void run_small(const Case& c, int block_n, bool f32_out, uint64_t seed, int out_shift = 0) {
  const int64_t ts = static_cast<int64_t>(c.heads) * 128;
  const int64_t keys = std::min(c.kv, c.lk);
  const float scale = c.scale > 0 ? c.scale : 1.f / std::sqrt(128.f);
  constexpr int64_t kGuardRows = 70;  // output rows past lq that must stay untouched
  bf16 *q, *k, *v, *out_base, *out;
  float *out_f32 = nullptr, *lse, *out_ref, *lse_ref;
  CHECK_CUDA(cudaMalloc(&q, c.lq * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&k, std::max<int64_t>(c.lk, 1) * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&v, std::max<int64_t>(c.lk, 1) * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&out_base, ((c.lq + kGuardRows) * ts + out_shift) * sizeof(bf16)));
  out = out_base + out_shift;
  CHECK_CUDA(cudaMalloc(&lse, (c.heads * c.lq + kGuardRows) * sizeof(float)));
  if (f32_out) CHECK_CUDA(cudaMalloc(&out_f32, (c.lq + kGuardRows) * ts * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&out_ref, c.lq * ts * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&lse_ref, c.heads * c.lq * sizeof(float)));
  fill_random<<<grid_for(c.lq * ts), 256>>>(q, c.lq * ts, seed, c.q_amp, ts, INT64_MAX);
  // Keys and values past kv_valid are NaN: the kernel must never read them.
  fill_random<<<grid_for(c.lk * ts), 256>>>(k, c.lk * ts, seed + 1, 1.f, ts, keys);
  fill_random<<<grid_for(c.lk * ts), 256>>>(v, c.lk * ts, seed + 2, 1.f, ts, keys);
  bf16 sentinel_bf = __float2bfloat16_rn(12345.f);
  fill_value<<<grid_for((c.lq + kGuardRows) * ts), 256>>>(out, (c.lq + kGuardRows) * ts, sentinel_bf);
  fill_value<<<grid_for(c.heads * c.lq + kGuardRows), 256>>>(lse, c.heads * c.lq + kGuardRows, 12345.f);
  if (f32_out) fill_value<<<grid_for((c.lq + kGuardRows) * ts), 256>>>(out_f32, (c.lq + kGuardRows) * ts, 12345.f);
  CHECK_CUDA(cudaGetLastError());

  ditrun::cuda::AttentionSm90Options opt;
  opt.block_n = block_n;
  opt.out_f32 = out_f32;
  std::string err;
  try {
    ditrun::cuda::attention_bf16_sm90_ex(out, lse, q, k, v, c.lq, c.lk, c.kv, c.heads, 128, scale, opt, nullptr);
    CHECK_CUDA(cudaDeviceSynchronize());
  } catch (const std::exception& ex) {
    err = ex.what();
  }
  char name[160];
  std::snprintf(name, sizeof(name), "lq %lld lk %lld kv %lld heads %d scale %.3g q_amp %.3g block_n %d%s%s",
                static_cast<long long>(c.lq), static_cast<long long>(c.lk), static_cast<long long>(c.kv), c.heads,
                scale, c.q_amp, block_n, f32_out ? " f32" : "", out_shift ? " out unaligned" : "");
  if (!err.empty()) {
    std::printf("FAIL %s: threw %s\n", name, err.c_str());
    ++failures;
  } else {
    if (keys > 0) {
      const size_t smem = (160 + keys) * sizeof(float);
      CHECK_CUDA(cudaFuncSetAttribute(reference_attention, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
      reference_attention<<<dim3(static_cast<unsigned>(c.lq), c.heads), 128, smem>>>(q, k, v, out_ref, lse_ref, 0,
                                                                                     c.lq, keys, c.heads, scale);
    } else {
      fill_value<<<grid_for(c.lq * ts), 256>>>(out_ref, c.lq * ts, 0.f);
      fill_value<<<grid_for(c.heads * c.lq), 256>>>(lse_ref, c.heads * c.lq, -INFINITY);
    }
    CHECK_CUDA(cudaDeviceSynchronize());
    const auto h_out = to_host(out, (c.lq + kGuardRows) * ts);
    const auto h_lse = to_host(lse, c.heads * c.lq + kGuardRows);
    const auto h_ref = to_host(out_ref, c.lq * ts);
    const auto h_lse_ref = to_host(lse_ref, c.heads * c.lq);
    Errors e;
    for (int64_t i = 0; i < c.lq * ts; ++i) compare_out(e, bf2f(h_out[i]), h_ref[i]);
    for (int64_t i = 0; i < c.heads * c.lq; ++i) compare_lse(e, h_lse[i], h_lse_ref[i]);
    int64_t touched = 0;
    // The sentinel as bf16 holds 12352 (12345 rounded to 8 significant bits): compare with what was stored.
    for (int64_t i = c.lq * ts; i < (c.lq + kGuardRows) * ts; ++i) touched += bf2f(h_out[i]) != bf2f(sentinel_bf);
    for (int64_t i = c.heads * c.lq; i < c.heads * c.lq + kGuardRows; ++i) touched += h_lse[i] != 12345.f;
    if (f32_out) {
      const auto h_f32 = to_host(out_f32, (c.lq + kGuardRows) * ts);
      for (int64_t i = 0; i < c.lq * ts; ++i) compare_out(e, h_f32[i], h_ref[i]);
      for (int64_t i = c.lq * ts; i < (c.lq + kGuardRows) * ts; ++i) touched += h_f32[i] != 12345.f;
    }
    char extra[64];
    std::snprintf(extra, sizeof(extra), touched ? "WROTE %lld guard values" : "", static_cast<long long>(touched));
    report(name, e, 1e-2, touched == 0, extra);
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(out_base),
                  static_cast<void*>(lse), static_cast<void*>(out_f32), static_cast<void*>(out_ref),
                  static_cast<void*>(lse_ref)})
    if (p) CHECK_CUDA(cudaFree(p));
}

// Full-size shape: new kernel vs attention_bf16 on every element, vs the fp32 reference on sampled rows, and a
// bitwise rerun.
void run_large(int64_t lq, int64_t lk, int heads, int block_n) {
  const int64_t ts = static_cast<int64_t>(heads) * 128;
  const float scale = 1.f / std::sqrt(128.f);
  bf16 *q, *k, *v, *out_new, *out_new2, *out_old;
  float *lse_new, *lse_old;
  CHECK_CUDA(cudaMalloc(&q, lq * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&k, lk * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&v, lk * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&out_new, lq * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&out_new2, lq * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&out_old, lq * ts * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&lse_new, heads * lq * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&lse_old, heads * lq * sizeof(float)));
  // q in [-2, 2) so the softmax is not flat over 32760 keys.
  fill_random<<<grid_for(lq * ts), 256>>>(q, lq * ts, 11, 2.f, ts, INT64_MAX);
  fill_random<<<grid_for(lk * ts), 256>>>(k, lk * ts, 12, 1.f, ts, INT64_MAX);
  fill_random<<<grid_for(lk * ts), 256>>>(v, lk * ts, 13, 1.f, ts, INT64_MAX);
  CHECK_CUDA(cudaGetLastError());
  ditrun::cuda::AttentionSm90Options opt;
  opt.block_n = block_n;
  char name[160];
  std::snprintf(name, sizeof(name), "LARGE heads %d lq %lld lk %lld block_n %d", heads, static_cast<long long>(lq),
                static_cast<long long>(lk), block_n);
  try {
    ditrun::cuda::attention_bf16_sm90_ex(out_new, lse_new, q, k, v, lq, lk, lk, heads, 128, scale, opt, nullptr);
    ditrun::cuda::attention_bf16_sm90_ex(out_new2, nullptr, q, k, v, lq, lk, lk, heads, 128, scale, opt, nullptr);
    ditrun::cuda::attention_bf16(out_old, lse_old, q, k, v, lq, lk, lk, heads, 128, scale, nullptr);
    CHECK_CUDA(cudaDeviceSynchronize());
  } catch (const std::exception& ex) {
    std::printf("FAIL %s: threw %s\n", name, ex.what());
    ++failures;
    return;
  }
  const auto h_new = to_host(out_new, lq * ts);
  const auto h_new2 = to_host(out_new2, lq * ts);
  const auto h_old = to_host(out_old, lq * ts);
  const auto h_lse_new = to_host(lse_new, heads * lq);
  const auto h_lse_old = to_host(lse_old, heads * lq);
  Errors e;
  for (int64_t i = 0; i < lq * ts; ++i) compare_out(e, bf2f(h_new[i]), bf2f(h_old[i]));
  for (int64_t i = 0; i < heads * lq; ++i) compare_lse(e, h_lse_new[i], h_lse_old[i]);
  const bool same = std::memcmp(h_new.data(), h_new2.data(), h_new.size() * sizeof(bf16)) == 0;
  report(std::string(name) + " vs attention_bf16", e, 1e-2, same, same ? "rerun bitwise equal" : "RERUN DIFFERS");

  // fp32 reference on the first 200 and last 200 rows (the last tile is partial unless lq % 128 == 0).
  if (lk <= 50000) {
    const int64_t sample = 200;
    float *out_ref, *lse_ref;
    CHECK_CUDA(cudaMalloc(&out_ref, sample * ts * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&lse_ref, heads * sample * sizeof(float)));
    const size_t smem = (160 + lk) * sizeof(float);
    CHECK_CUDA(cudaFuncSetAttribute(reference_attention, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    Errors r;
    for (const int64_t begin : {int64_t{0}, lq - sample}) {
      reference_attention<<<dim3(static_cast<unsigned>(sample), heads), 128, smem>>>(q, k, v, out_ref, lse_ref, begin,
                                                                                     sample, lk, heads, scale);
      CHECK_CUDA(cudaDeviceSynchronize());
      const auto h_ref = to_host(out_ref, sample * ts);
      const auto h_lse_ref = to_host(lse_ref, heads * sample);
      for (int64_t i = 0; i < sample * ts; ++i) compare_out(r, bf2f(h_new[begin * ts + i]), h_ref[i]);
      for (int h = 0; h < heads; ++h)
        for (int64_t i = 0; i < sample; ++i) compare_lse(r, h_lse_new[h * lq + begin + i], h_lse_ref[h * sample + i]);
    }
    report(std::string(name) + " vs fp32 ref (400 rows)", r, 1e-2);
    CHECK_CUDA(cudaFree(out_ref));
    CHECK_CUDA(cudaFree(lse_ref));
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(out_new),
                  static_cast<void*>(out_new2), static_cast<void*>(out_old), static_cast<void*>(lse_new),
                  static_cast<void*>(lse_old)})
    CHECK_CUDA(cudaFree(p));
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  if (prop.major != 9) {
    std::printf("skipped: the kernel needs sm_90a\n");
    return 0;
  }

  const Case cases[] = {
      {1, 1, 1, 1, 0, 1},           {128, 128, 128, 1, 0, 1},      {77, 50, 50, 2, 0, 1},
      {200, 300, 300, 3, 0, 1},     {1000, 1000, 900, 5, 0, 1},    {257, 513, 513, 40, 0, 1},
      {130, 177, 177, 2, 0, 1},     {3000, 1000, 1000, 12, 0, 1},  {2000, 512, 512, 40, 0, 1},
      {2000, 512, 300, 12, 0, 1},   {1500, 4096, 4000, 4, 0.5f, 1}, {640, 2000, 2000, 8, 0, 8},
      {100, 64, 0, 3, 0, 1},        {129, 1, 1, 2, 0, 1},          {500, 1500, 1500, 4, 2.f, 4},
  };
  uint64_t seed = 100;
  // At block_n 128 a bf16 out goes through shared memory and TMA stores: also with the f32 output beside it, and
  // with an out that is not 16-byte aligned (stored from registers instead).
  for (const Case& c : cases) {
    for (const int block_n : {128, 176, 192}) run_small(c, block_n, block_n == 176, seed += 3);
    run_small(c, 128, true, seed += 3);
    run_small(c, 128, false, seed += 3, 2);
  }
  // The default key tile choice.
  run_small({2000, 512, 512, 40, 0, 1}, 0, false, seed += 3);
  run_small({700, 3000, 2990, 6, 0, 1}, 0, false, seed += 3);

  if (!quick) {
    run_large(32760, 32760, 40, 0);
    run_large(32760, 512, 40, 0);
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}

// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011): the value of element i depends only on
// (seed, stream, i), so any rank can produce its own shard of the noise and the video does not depend on the layout.
#pragma once
#include <cmath>
#include <cstdint>

// Callable from CUDA kernels too, so a GPU fills the same values a CPU would (random weights on the device).
#ifdef __CUDACC__
#define DITRUN_HOST_DEVICE __host__ __device__
#else
#define DITRUN_HOST_DEVICE
#endif

namespace ditrun {

struct Philox4x32 {
  DITRUN_HOST_DEVICE static void round(uint32_t c[4], const uint32_t k[2]) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c[1] ^ k[0], n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
  }
  // Ten rounds with the key schedule of the reference.
  DITRUN_HOST_DEVICE static void generate(uint32_t out[4], uint64_t counter_lo, uint64_t counter_hi, uint64_t key) {
    uint32_t c[4] = {static_cast<uint32_t>(counter_lo), static_cast<uint32_t>(counter_lo >> 32),
                     static_cast<uint32_t>(counter_hi), static_cast<uint32_t>(counter_hi >> 32)};
    uint32_t k[2] = {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
    for (int r = 0; r < 10; ++r) {
      round(c, k);
      if (r < 9) {
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
      }
    }
    for (int i = 0; i < 4; ++i) out[i] = c[i];
  }
};

// Standard normal for element `index` of stream `stream` under `seed` (Box-Muller on two 32-bit uniforms).
DITRUN_HOST_DEVICE inline float philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  Philox4x32::generate(r, index, stream, seed);
  const double u1 = (static_cast<double>(r[0]) + 1.0) / 4294967296.0;  // (0, 1]
  const double u2 = static_cast<double>(r[1]) / 4294967296.0;          // [0, 1)
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// A stable 64-bit stream id for a name (FNV-1a), e.g. one stream per weight tensor.
inline uint64_t stream_id(const char* name) {
  uint64_t h = 1469598103934665603ull;
  for (; *name; ++name) h = (h ^ static_cast<unsigned char>(*name)) * 1099511628211ull;
  return h;
}

}  // namespace ditrun

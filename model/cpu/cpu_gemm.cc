// fp32 GEMM in dot-product form: both operands are contiguous along K, so a 4×4 tile of outputs shares every
// loaded vector four times. Good enough for the reference; speed lives in the CUDA backend.
#include <algorithm>
#include <cstring>

#include "model/cpu/cpu_backend.h"

namespace ditrun {

namespace {

constexpr int kTile = 4;
constexpr int kLanes = 8;
// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 24;

// Dot products of rows x[0..rm) with rows w[0..rn), each of length k.
inline void tile_dots(float out[kTile][kTile], const float* const* xr, const float* const* wr, int rm, int rn,
                      int64_t k) {
  float acc[kTile][kTile][kLanes] = {};
  int64_t kk = 0;
  for (; kk + kLanes <= k; kk += kLanes)
    for (int i = 0; i < rm; ++i)
      for (int j = 0; j < rn; ++j)
        for (int l = 0; l < kLanes; ++l) acc[i][j][l] += xr[i][kk + l] * wr[j][kk + l];
  for (int i = 0; i < rm; ++i)
    for (int j = 0; j < rn; ++j) {
      float s = 0;
      for (int l = 0; l < kLanes; ++l) s += acc[i][j][l];
      for (int64_t t = kk; t < k; ++t) s += xr[i][t] * wr[j][t];
      out[i][j] = s;
    }
}

}  // namespace

void cpu_gemm_xwt(float* out, const float* x, const float* w, const float* bias, int64_t m, int64_t n, int64_t k) {
  const int64_t tiles_m = (m + kTile - 1) / kTile;
  const int64_t tiles_n = (n + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) collapse(2) if (m * n * k > kParallelWork)
  for (int64_t tm = 0; tm < tiles_m; ++tm)
    for (int64_t tn = 0; tn < tiles_n; ++tn) {
      const int64_t i0 = tm * kTile, j0 = tn * kTile;
      const int rm = static_cast<int>(std::min<int64_t>(kTile, m - i0));
      const int rn = static_cast<int>(std::min<int64_t>(kTile, n - j0));
      const float* xr[kTile];
      const float* wr[kTile];
      for (int i = 0; i < kTile; ++i) xr[i] = x + (i0 + std::min(i, rm - 1)) * k;
      for (int j = 0; j < kTile; ++j) wr[j] = w + (j0 + std::min(j, rn - 1)) * k;
      float tile[kTile][kTile];
      tile_dots(tile, xr, wr, rm, rn, k);
      for (int i = 0; i < rm; ++i)
        for (int j = 0; j < rn; ++j) out[(i0 + i) * n + j0 + j] = tile[i][j] + (bias ? bias[j0 + j] : 0.f);
    }
}

}  // namespace ditrun

// Tables computed on the host in float64 (spec §1.3, §1.6): the timestep sinusoid and the 3-D RoPE angles.
#pragma once
#include <cstdint>
#include <vector>

namespace ditrun::wan {

// [cos(t·ω_0..half-1) | sin(t·ω_0..half-1)], ω_j = 10000^(−j/half), half = freq_dim/2 (cos first).
std::vector<float> timestep_sinusoid(double t, int freq_dim);

// Angle table of 3-D RoPE for tokens [first, first + count) of an (f, h, w) token grid, row-major: cos and sin
// [count, head_dim/2]. Pairs split over (f, h, w) as d_t = d − 4⌊d/6⌋ and d_h = d_w = 2⌊d/6⌋ dims, θ = 10000.
// Tokens past f·h·w (padding) get angle 0 (identity rotation).
struct RopeTable {
  std::vector<float> cos;
  std::vector<float> sin;
};
RopeTable rope_table(int head_dim, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t first, int64_t count);

}  // namespace ditrun::wan

#include "model/sampling/schedule.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace ditrun::sampling {

SigmaGrid parse_sigma_grid(const std::string& name) {
  if (name == "wan") return SigmaGrid::wan;
  if (name == "diffusers") return SigmaGrid::diffusers;
  throw std::invalid_argument("unknown sigma grid \"" + name + "\" (wan or diffusers)");
}

Schedule flow_schedule(int steps, double shift, SigmaGrid grid) {
  if (steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (!(shift > 0)) throw std::invalid_argument("shift must be positive");
  // wan: linspace(σ_max, σ_min, N+1)[:N] with σ_max = float32(0.999), σ_min = 0 (spec §6.2).
  // diffusers: linspace(1, 1/1000, N+1)[:N].
  const double hi = grid == SigmaGrid::wan ? static_cast<double>(0.999f) : 1.0;
  const double lo = grid == SigmaGrid::wan ? 0.0 : 1.0 / 1000.0;
  Schedule s;
  for (int i = 0; i < steps; ++i) {
    const double sigma = hi + (lo - hi) * i / steps;
    double shifted = shift * sigma / (1.0 + (shift - 1.0) * sigma);
    if (grid == SigmaGrid::diffusers && i == 0) shifted -= 1e-6;  // diffusers keeps the first σ below 1
    s.timesteps.push_back(static_cast<double>(static_cast<int64_t>(shifted * 1000.0)));
    s.sigmas.push_back(static_cast<double>(static_cast<float>(shifted)));
  }
  s.sigmas.push_back(0.0);
  return s;
}

}  // namespace ditrun::sampling

// Flow-matching sigma schedules (spec §6.2): the σ grid, the shift, and the integer timesteps fed to the DiT.
#pragma once
#include <string>
#include <vector>

namespace ditrun::sampling {

// wan: the original Wan2.1 grid (σ from 0.999 = fp32 σ_max of the training table down to 0);
// diffusers: the grid of diffusers' UniPC with use_flow_sigmas (σ from 1 down to 1/1000).
enum class SigmaGrid { wan, diffusers };
SigmaGrid parse_sigma_grid(const std::string& name);

struct Schedule {
  std::vector<double> sigmas;     // N + 1 shifted sigmas, the last 0
  std::vector<double> timesteps;  // N model timesteps: int64(σ'·1000) (truncation), as the reference feeds them
  int steps() const { return static_cast<int>(timesteps.size()); }
};

// σ' = shift·σ / (1 + (shift − 1)·σ) on the grid. Sigmas are rounded to fp32 as the reference stores them.
Schedule flow_schedule(int steps, double shift, SigmaGrid grid);

}  // namespace ditrun::sampling

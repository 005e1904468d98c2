// Where a DiT comes from: the built-in tiny model, seeded random weights of a named config (benchmarks, tests),
// or a checkpoint folder. Resolved and checked before any GPU work.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "model/core/backend.h"
#include "model/wan/dit.h"

namespace ditrun::wan {

struct DitSource {
  std::string spec;                              // as the user gave it
  DitConfig config;
  std::optional<std::filesystem::path> weights;  // folder with config.json + safetensors; empty = random
  uint64_t seed = 0;                             // for random weights
  std::string describe() const;
};

// "tiny" (built-in, seed 0), "random:<tiny|1.3b|14b>[:seed]", or a model folder: a Diffusers model root (with
// transformer/), a transformer/ folder, or a folder of original Wan DiT files. Checks the config and that every
// weight tensor is present with the right shape (no data read). Throws std::runtime_error naming what is wrong.
DitSource resolve_dit_source(const std::string& spec);

// Builds the DiT on the backend (loads or draws the weights).
DiT make_dit(Backend& backend, const DitSource& source);

}  // namespace ditrun::wan

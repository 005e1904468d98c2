// Where a VAE comes from: the built-in tiny VAE, seeded random weights of a named config (benchmarks), or a
// Diffusers checkpoint. Resolved and checked (config and tensor headers, no data) before any GPU work.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "model/core/backend.h"
#include "model/wan/vae_decoder.h"

namespace ditrun::wan {

struct VaeSource {
  std::string spec;                              // as the user gave it
  VaeConfig config;
  std::optional<std::filesystem::path> weights;  // the vae/ folder; empty = random
  uint64_t seed = 0;                             // for random weights
  std::string describe() const;
};

// "tiny" (built-in, seed 0), "random:<tiny|wan2.1>[:seed]", or a folder: a Diffusers model root (with vae/) or a
// vae/ folder itself. Throws std::runtime_error naming what is wrong.
VaeSource resolve_vae_source(const std::string& spec);

// Builds the decoder on the backend (loads or draws the weights).
VaeDecoder make_vae_decoder(Backend& backend, const VaeSource& source);

}  // namespace ditrun::wan

// The initial noise of a prompt: element i of the latent [C, F, H, W] is philox_normal(seed, 0, i), so every rank
// can make exactly its own shard and the video is the same for any parallel layout.
#pragma once
#include <cstdint>
#include <vector>

#include "model/core/philox.h"

namespace ditrun::sampling {

inline float latent_noise(uint64_t seed, uint64_t element) { return philox_normal(seed, 0, element); }

inline std::vector<float> latent_noise(uint64_t seed, uint64_t first, uint64_t count) {
  std::vector<float> out(count);
  for (uint64_t i = 0; i < count; ++i) out[i] = latent_noise(seed, first + i);
  return out;
}

}  // namespace ditrun::sampling

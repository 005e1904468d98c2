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

// The same noise in token form (Backend::patchify: row = 2×2 patch, feature (kh·2 + kw)·C + c) for tokens
// [first, first + count) of a latent [channels, frames, height, width]; rows past the last token are zeros.
inline std::vector<float> token_noise(uint64_t seed, int64_t channels, int64_t frames, int64_t height, int64_t width,
                                      int64_t first, int64_t count) {
  const int64_t rows = height / 2, cols = width / 2, tokens = frames * rows * cols, features = 4 * channels;
  std::vector<float> out(static_cast<size_t>(count * features), 0.f);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t l = first + i;
    if (l >= tokens) break;
    const int64_t f = l / (rows * cols), a = (l / cols) % rows, b = l % cols;
    for (int64_t j = 0; j < features; ++j) {
      const int64_t c = j % channels, kh = j / channels / 2, kw = (j / channels) % 2;
      const int64_t element = ((c * frames + f) * height + 2 * a + kh) * width + 2 * b + kw;
      out[i * features + j] = latent_noise(seed, static_cast<uint64_t>(element));
    }
  }
  return out;
}

}  // namespace ditrun::sampling

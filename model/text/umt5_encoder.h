// The umT5 encoder forward on the op interface (spec §5.1): token embedding, per layer pre-norm self-attention with
// its own relative position bias (no 1/√d scaling, key mask) and a gated-GELU(tanh) FFN, final RMSNorm.
//
// It runs on the prompt's real tokens only (ids[0, length), EOS included). The reference runs 512 tokens with the
// pad keys masked out; its rows [0, length) are the same numbers, because a masked key gets exactly zero weight and
// the position bias depends only on key − query. Those rows are what spec §5.2 keeps (the slice to seq_len).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/core/backend.h"
#include "model/text/umt5_config.h"
#include "model/text/umt5_weights.h"

namespace ditrun::text {

class Umt5Encoder {
 public:
  Umt5Encoder(Backend& backend, Umt5Config config, Umt5Weights weights);

  // Hidden states of the real tokens, [ids.size(), d_model] f32 on the host, row-major.
  std::vector<float> encode(std::span<const int32_t> ids);
  // The same into a backend tensor out [ids.size(), d_model] f32.
  void encode(Tensor& out, std::span<const int32_t> ids);

  const Umt5Config& config() const { return config_; }
  Backend& backend() { return backend_; }

 private:
  Backend& backend_;
  Umt5Config config_;
  Umt5Weights weights_;
};

}  // namespace ditrun::text

// The text contexts the step benches feed the DiT: random rows (0.2 · N(0, 1), Philox seed 5) of the model's text
// length and width, a positive and a negative one, encoded into the model's per-block caches.
#pragma once
#include <vector>

#include "model/core/philox.h"
#include "model/wan/dit.h"

namespace ditrun::bench {

struct RandomContexts {
  wan::ContextCache cond, uncond;
};

inline RandomContexts random_contexts(wan::DiT& dit) {
  const auto& c = dit.config();
  std::vector<float> ctx(static_cast<size_t>(c.text_len) * c.text_dim), neg(ctx.size());
  for (size_t i = 0; i < ctx.size(); ++i) {
    ctx[i] = 0.2f * philox_normal(5, 1, i);
    neg[i] = 0.2f * philox_normal(5, 2, i);
  }
  return {dit.encode_context(ctx, c.text_len), dit.encode_context(neg, c.text_len)};
}

}  // namespace ditrun::bench

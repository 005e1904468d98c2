// The Wan2.1 DiT forward (spec §1.2-1.8), written once against the op interface: CPU fp32 reference and CUDA
// bf16 with fp32 residual stream, modulation, norms and head.
#pragma once
#include <vector>

#include "model/core/backend.h"
#include "model/wan/dit_config.h"
#include "model/wan/dit_weights.h"

namespace ditrun::wan {

// What depends only on the text: the embedded context and every block's cross-attention K and V. Computed once
// per prompt and reused by every step.
struct ContextCache {
  Tensor embedded;            // [text_len, D]
  std::vector<Tensor> k, v;   // per block [text_len, heads, head_dim]
};

class DiT {
 public:
  DiT(Backend& backend, DitConfig config, DitWeights weights);

  const DitConfig& config() const { return config_; }
  Backend& backend() { return backend_; }

  // context: [rows ≤ text_len, text_dim] f32 on the host (an umT5 output cut to its real length); zero-padded to
  // text_len rows (spec §1.2 step 5).
  ContextCache encode_context(const std::vector<float>& context, int64_t rows);

  // v = DiT(x, t, context): x and v [C, F, H, W] f32 tensors on the backend.
  void forward(Tensor& v, const Tensor& x, double timestep, const ContextCache& context);

 private:
  void block(int index, Tensor& x, const Tensor& e0, const Tensor& rope_cos, const Tensor& rope_sin,
             const ContextCache& context);

  Backend& backend_;
  DitConfig config_;
  DitWeights w_;
};

}  // namespace ditrun::wan

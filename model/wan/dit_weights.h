// DiT weights on a backend: loaded from a checkpoint (Diffusers or original Wan names, sharded or not, fp32 or
// bf16 on disk) or drawn from a seed (the built-in tiny model, benchmarks). Precision map of spec §1.8: the big
// linears in the backend's compute dtype; time embedding, modulation tables, norms and head in fp32.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/core/backend.h"
#include "model/wan/dit_config.h"

namespace ditrun::wan {

struct Linear {
  Tensor w;  // [out, in]
  Tensor b;  // [out]
};

struct DitBlockWeights {
  Tensor modulation;  // [6, D] f32: shift, scale, gate (self-attention), shift, scale, gate (FFN)
  Linear q, k, v, o;
  Tensor norm_q, norm_k;  // RMSNorm over all of D
  Tensor cross_norm_w, cross_norm_b;  // the affine LayerNorm before cross-attention (Wan norm3, diffusers norm2)
  Linear cross_q, cross_k, cross_v, cross_o;
  Tensor cross_norm_q, cross_norm_k;
  Linear ffn_in, ffn_out;
};

struct DitWeights {
  Linear patch;        // Conv3d (1,2,2) as a linear over the (c, kh, kw) vector: w [D, C·4]
  Linear text1, text2;  // text_embedding (GELU-tanh between)
  Linear time1, time2;  // time_embedding (SiLU between), f32
  Linear time_proj;     // [6D, D], f32
  Linear head;          // [C·4, D], f32
  Tensor head_modulation;  // [2, D] f32
  std::vector<DitBlockWeights> blocks;
};

// One tensor the model needs: its Diffusers name, shape as stored, and whether it is a big (compute dtype) weight.
struct WeightSpec {
  std::string name;
  Shape shape;
  bool compute_dtype;
  Tensor* target;
};
std::vector<WeightSpec> dit_weight_specs(const DitConfig& config, DitWeights& weights);

// The Diffusers name of an original Wan DiT tensor name (spec §3.3); names already in Diffusers form pass through.
std::string diffusers_name(const std::string& name);

// Checks that `dir` holds exactly the model's tensors with the right shapes, reading only the headers.
void check_dit_checkpoint(const DitConfig& config, const std::filesystem::path& dir);

// Loads `dir` (a Diffusers `transformer/` folder or a folder of original Wan files) onto the backend. Throws
// std::runtime_error naming the missing, unexpected or misshaped tensor.
DitWeights load_dit_weights(Backend& backend, const DitConfig& config, const std::filesystem::path& dir);

// Seeded random weights with sensible scales (fan-in normal linears, norms near 1).
DitWeights random_dit_weights(Backend& backend, const DitConfig& config, uint64_t seed);

}  // namespace ditrun::wan

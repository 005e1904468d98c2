// umT5 encoder weights on a backend: loaded from an HF `text_encoder/` folder (UMT5EncoderModel names, spec §5.1;
// `model.safetensors`, sharded with its index, fp32 or bf16 on disk) or drawn from a seed (the tiny encoder).
// The linears and the token embedding in the backend's compute dtype; norms and position-bias tables in fp32.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/core/backend.h"
#include "model/text/umt5_config.h"

namespace ditrun::text {

struct Umt5LayerWeights {
  Tensor norm1;                  // layer.0.layer_norm [D] f32
  Tensor q, k, v, o;             // [inner, D] / o [D, inner]
  Tensor position_bias;          // relative_attention_bias [buckets, H] f32 (per layer in umT5)
  Tensor norm2;                  // layer.1.layer_norm [D] f32
  Tensor wi_gate, wi_linear, wo;  // DenseReluDense.wi_0 (GELU branch) [F, D], wi_1 [F, D], wo [D, F]
};

struct Umt5Weights {
  Tensor token_embedding;  // shared.weight [V, D]
  std::vector<Umt5LayerWeights> layers;
  Tensor final_norm;  // encoder.final_layer_norm [D] f32
};

struct Umt5WeightSpec {
  std::string name;  // HF UMT5EncoderModel name
  Shape shape;
  bool compute_dtype;
  Tensor* target;
};
std::vector<Umt5WeightSpec> umt5_weight_specs(const Umt5Config& config, Umt5Weights& weights);

// Checks that `dir` holds exactly the encoder's tensors with the right shapes (headers only). The embedding may be
// stored as shared.weight, encoder.embed_tokens.weight (tied) or both. Throws std::runtime_error naming the missing,
// unexpected or misshaped tensor.
void check_umt5_checkpoint(const Umt5Config& config, const std::filesystem::path& dir);

Umt5Weights load_umt5_weights(Backend& backend, const Umt5Config& config, const std::filesystem::path& dir);

// Seeded random weights: N(0, 1) embedding (T5's init scale), fan-in normal linears, norms near 1, bias tables
// N(0, 0.5) so that position visibly matters.
Umt5Weights random_umt5_weights(Backend& backend, const Umt5Config& config, uint64_t seed);

}  // namespace ditrun::text

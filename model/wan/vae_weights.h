// Wan-VAE decoder weights on a backend (spec §4.3), loaded from a Diffusers `vae/` folder (AutoencoderKLWan
// safetensors, sharded or not, fp32/bf16/fp16 on disk) or drawn from a seed (the built-in tiny VAE). All f32
// (the reference VAE is fp32, spec §1.8), in the channels-last layouts of the video ops (model/core/backend.h).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/core/backend.h"
#include "model/wan/vae_config.h"

namespace ditrun::wan {

// A convolution: w [Co, kt, kh, kw, Ci] for Backend::conv3d, or [Co, Ci] for a 1×1 one applied with linear.
struct VaeConv {
  Tensor w;
  Tensor b;  // [Co]
};

struct VaeResidualBlock {
  Tensor norm1, norm2;  // RMS_norm gamma [C]
  VaeConv conv1, conv2;  // 3×3×3, cached
  bool has_shortcut = false;
  VaeConv shortcut;  // 1×1×1 [Co, Ci] when in ≠ out (never cached)
};

struct VaeAttentionBlock {
  Tensor norm;   // [C]
  VaeConv qkv;   // [3C, C]: rows 0..C−1 give q, then k, then v
  VaeConv proj;  // [C, C]
};

struct VaeUpsampler {
  bool temporal = false;  // upsample3d (time_conv, then the spatial path) or upsample2d
  VaeConv time_conv;      // [2C, 3, 1, 1, C], cached
  VaeConv spatial;        // the Conv2d after the ×2 upsample as [C/2, 1, 3, 3, C]
};

struct VaeUpBlock {
  std::vector<VaeResidualBlock> resnets;
  bool has_upsampler = false;
  VaeUpsampler upsampler;
};

struct VaeDecoderWeights {
  VaeConv post_quant;  // [z, z] (top-level conv2 / post_quant_conv, applied to the whole latent)
  VaeConv conv_in;
  VaeResidualBlock mid_first, mid_second;
  VaeAttentionBlock mid_attention;
  std::vector<VaeUpBlock> up_blocks;
  Tensor norm_out;
  VaeConv conv_out;
};

// How a stored (PyTorch) tensor becomes the device tensor.
enum class VaeLayout {
  as_is,      // biases
  gamma,      // [C,1,1,1] or [C,1,1] -> [C]
  pointwise,  // 1×1(×1) conv [Co,Ci,1,1(,1)] -> [Co,Ci] (same order)
  conv3d,     // [Co,Ci,kt,kh,kw] -> [Co,kt,kh,kw,Ci]
  conv2d,     // [Co,Ci,kh,kw] -> [Co,1,kh,kw,Ci]
};

// One tensor of the decoder: its Diffusers name, shape as stored, layout and where it goes.
struct VaeWeightSpec {
  std::string name;
  Shape shape;
  VaeLayout layout;
  Tensor* target;
};
std::vector<VaeWeightSpec> vae_decoder_weight_specs(const VaeConfig& config, VaeDecoderWeights& weights);

// Parameters of the decoder including post_quant_conv, from the tensor list (Wan2.1: 73,295,603).
int64_t vae_decoder_parameter_count(const VaeConfig& config);

// Checks that `dir` holds every decoder tensor with the right shape, reading only the headers. Encoder tensors
// (encoder.*, quant_conv.*) may be present and are ignored; any other unknown tensor is an error.
void check_vae_checkpoint(const VaeConfig& config, const std::filesystem::path& dir);

// Loads the decoder from `dir` (a Diffusers `vae/` folder). Throws std::runtime_error naming the missing,
// unexpected or misshaped tensor.
VaeDecoderWeights load_vae_decoder_weights(Backend& backend, const VaeConfig& config, const std::filesystem::path& dir);

// Seeded random weights with sensible scales (fan-in normal convs, gammas near 1, a quieter output conv).
VaeDecoderWeights random_vae_decoder_weights(Backend& backend, const VaeConfig& config, uint64_t seed);

}  // namespace ditrun::wan

// Wan-VAE (Wan2.1) hyper-parameters (spec §4.1) and their reading from a Diffusers `vae/config.json`
// (AutoencoderKLWan). Only the decoder is built here; the encoder's keys are read for validation only.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ditrun::wan {

struct VaeConfig {
  std::string name;                                   // "wan2.1", "tiny", or the folder it was read from
  int base_dim = 96;                                  // decoder base width (Diffusers decoder_base_dim or base_dim)
  int z_dim = 16;                                     // latent channels
  std::vector<int> dim_mult = {1, 2, 4, 4};
  int num_res_blocks = 2;                             // per up block: num_res_blocks + 1 residual blocks
  std::vector<bool> temporal_upsample = {true, true, false};  // decoder order: temperal_downsample reversed
  int out_channels = 3;
  std::vector<float> latents_mean, latents_std;       // z_dim each: decode input is z·std + mean (spec §4.1)

  // Channel widths along the decoder: [base·mult.back(), then base·mult reversed] = [384, 384, 384, 192, 96].
  std::vector<int> decoder_dims() const;
  // Up blocks: one per dim_mult entry; all but the last end in an upsampler.
  int up_blocks() const { return static_cast<int>(dim_mult.size()); }
  // Output frames per latent frame after the first (4), and output pixels per latent pixel (8).
  int temporal_factor() const;
  int spatial_factor() const { return 1 << (up_blocks() - 1); }
  // Output frames of a decode of `latent_frames` (spec §4.4: the first latent frame gives one frame).
  int64_t output_frames(int64_t latent_frames) const {
    return latent_frames > 0 ? 1 + temporal_factor() * (latent_frames - 1) : 0;
  }
};

// The released Wan2.1 VAE (spec §4.1).
VaeConfig vae_config_wan21();
// The built-in toy VAE: the same architecture at base width 4 (channels 16/16/16/8/4), z_dim 16 so that it decodes
// the DiT's latents, and the real latent mean/std.
VaeConfig vae_config_tiny();

// Reads a Diffusers AutoencoderKLWan `config.json`. Throws std::runtime_error naming the file and key, also for
// variants this decoder does not implement (Wan2.2's residual VAE, patch_size, attention scales).
VaeConfig read_vae_config(const std::filesystem::path& config_json);

// Checks what the implementation relies on (sizes, list lengths, mean/std of z_dim entries, std ≠ 0).
void validate_vae_config(const VaeConfig& c);

}  // namespace ditrun::wan

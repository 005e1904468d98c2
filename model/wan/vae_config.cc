#include "model/wan/vae_config.h"

#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace ditrun::wan {

namespace {

// Spec §4.1 (also the Diffusers AutoencoderKLWan defaults).
const std::vector<float> kLatentsMean = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                         -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                         -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
const std::vector<float> kLatentsStd = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                        3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

}  // namespace

std::vector<int> VaeConfig::decoder_dims() const {
  std::vector<int> dims = {base_dim * dim_mult.back()};
  for (auto it = dim_mult.rbegin(); it != dim_mult.rend(); ++it) dims.push_back(base_dim * *it);
  return dims;
}

int VaeConfig::temporal_factor() const {
  int factor = 1;
  for (int i = 0; i + 1 < up_blocks() && i < static_cast<int>(temporal_upsample.size()); ++i)
    if (temporal_upsample[i]) factor *= 2;
  return factor;
}

VaeConfig vae_config_wan21() {
  VaeConfig c;
  c.name = "wan2.1";
  c.latents_mean = kLatentsMean;
  c.latents_std = kLatentsStd;
  return c;
}

VaeConfig vae_config_tiny() {
  VaeConfig c = vae_config_wan21();
  c.name = "tiny";
  c.base_dim = 4;  // small enough that its golden checkpoint stays under 1 MB (tests/golden/README.md)
  return c;
}

VaeConfig read_vae_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("invalid JSON in " + path.string() + ": " + e.what());
  }
  auto get = [&](const char* key, auto fallback) {
    using T = decltype(fallback);
    if (!j.contains(key) || j.at(key).is_null()) return fallback;
    try {
      return j.at(key).get<T>();
    } catch (const std::exception&) {
      throw std::runtime_error(std::string("config key ") + key + " has the wrong type in " + path.string());
    }
  };
  auto refuse = [&](const std::string& what) {
    throw std::runtime_error("unsupported VAE: " + what + " (" + path.string() + ")");
  };
  if (const auto cls = get("_class_name", std::string("AutoencoderKLWan")); cls != "AutoencoderKLWan")
    refuse("_class_name " + cls + ", expected AutoencoderKLWan");
  if (get("is_residual", false)) refuse("is_residual (the Wan2.2 VAE)");
  if (j.contains("patch_size") && !j.at("patch_size").is_null()) refuse("patch_size is set");
  if (!get("attn_scales", std::vector<double>{}).empty()) refuse("attn_scales is not empty");

  VaeConfig c = vae_config_wan21();
  c.name = path.parent_path().string();
  c.base_dim = get("decoder_base_dim", get("base_dim", c.base_dim));
  c.z_dim = get("z_dim", c.z_dim);
  c.dim_mult = get("dim_mult", c.dim_mult);
  c.num_res_blocks = get("num_res_blocks", c.num_res_blocks);
  const std::vector<bool> down = get("temperal_downsample", std::vector<bool>{false, true, true});
  c.temporal_upsample.assign(down.rbegin(), down.rend());
  c.out_channels = get("out_channels", c.out_channels);
  c.latents_mean = get("latents_mean", c.latents_mean);
  c.latents_std = get("latents_std", c.latents_std);
  try {
    validate_vae_config(c);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + " (" + path.string() + ")");
  }
  return c;
}

void validate_vae_config(const VaeConfig& c) {
  auto fail = [](const std::string& what) { throw std::runtime_error("invalid VAE config: " + what); };
  if (c.base_dim < 1 || c.z_dim < 1 || c.num_res_blocks < 0 || c.out_channels < 1)
    fail("base_dim, z_dim and out_channels must be positive");
  if (c.dim_mult.empty()) fail("dim_mult is empty");
  for (int m : c.dim_mult)
    if (m < 1) fail("dim_mult entries must be positive");
  // Each upsampler halves the width of the block it ends (Wan2.1: in_dim // 2 of the next block).
  for (int i = 0; i + 1 < c.up_blocks(); ++i)
    if (c.decoder_dims()[i + 1] % 2) fail("an upsampled width is odd");
  if (static_cast<int>(c.temporal_upsample.size()) != c.up_blocks() - 1)
    fail("temperal_downsample has " + std::to_string(c.temporal_upsample.size()) + " entries, expected " +
         std::to_string(c.up_blocks() - 1));
  if (static_cast<int>(c.latents_mean.size()) != c.z_dim || static_cast<int>(c.latents_std.size()) != c.z_dim)
    fail("latents_mean/latents_std need z_dim = " + std::to_string(c.z_dim) + " entries");
  for (float s : c.latents_std)
    if (!(s != 0.f)) fail("latents_std has a zero");
}

}  // namespace ditrun::wan

#include "model/wan/dit_config.h"

#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace ditrun::wan {

long long DitConfig::parameter_count() const {
  const long long d = dim, f = ffn_dim;
  const long long per_block = 6 * d + 8 * (d * d + d) + 4 * d + 2 * d + (d * f + f) + (f * d + d);
  return per_block * layers + (d * patch_features() + d) + (d * text_dim + d) + (d * d + d) + (d * freq_dim + d) +
         (d * d + d) + (6 * d * d + 6 * d) + (out_features() * d + out_features()) + 2 * d;
}

DitConfig dit_config_1_3b() {
  DitConfig c;
  c.name = "t2v-1.3b";
  c.dim = 1536;
  c.ffn_dim = 8960;
  c.heads = 12;
  c.layers = 30;
  return c;
}

DitConfig dit_config_14b() {
  DitConfig c;
  c.name = "t2v-14b";
  c.dim = 5120;
  c.ffn_dim = 13824;
  c.heads = 40;
  c.layers = 40;
  return c;
}

DitConfig dit_config_tiny() {
  DitConfig c;
  c.name = "tiny";
  c.dim = 128;
  c.ffn_dim = 256;
  c.heads = 4;  // head_dim 32: RoPE pairs 6/5/5 over (f, h, w)
  c.layers = 3;
  c.text_dim = 64;
  return c;
}

DitConfig dit_config_named(const std::string& name) {
  if (name == "tiny") return dit_config_tiny();
  if (name == "1.3b" || name == "t2v-1.3b") return dit_config_1_3b();
  if (name == "14b" || name == "t2v-14b") return dit_config_14b();
  throw std::runtime_error("unknown model config \"" + name + "\" (tiny, 1.3b or 14b)");
}

DitConfig read_dit_config(const std::filesystem::path& path) {
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
    if (!j.contains(key)) return fallback;
    try {
      return j.at(key).get<T>();
    } catch (const std::exception&) {
      throw std::runtime_error(std::string("config key ") + key + " has the wrong type in " + path.string());
    }
  };
  auto need = [&](const char* key) {
    if (!j.contains(key)) throw std::runtime_error(std::string("config key ") + key + " missing in " + path.string());
    return get(key, 0);
  };
  DitConfig c;
  c.name = path.parent_path().string();
  if (j.contains("num_attention_heads")) {  // Diffusers WanTransformer3DModel
    c.heads = need("num_attention_heads");
    c.dim = c.heads * need("attention_head_dim");
    c.ffn_dim = need("ffn_dim");
    c.layers = need("num_layers");
    c.in_dim = get("in_channels", 16);
    c.out_dim = get("out_channels", 16);
    c.text_dim = get("text_dim", 4096);
    c.freq_dim = get("freq_dim", 256);
    c.eps = get("eps", 1e-6);
    if (j.contains("patch_size")) {
      const auto p = j.at("patch_size").get<std::vector<int>>();
      if (p.size() != 3) throw std::runtime_error("config key patch_size must have 3 entries in " + path.string());
      c.patch_t = p[0];
      c.patch_h = p[1];
      c.patch_w = p[2];
    }
  } else {  // original WanModel config (spec §1.1): patch_size and text_dim are constructor defaults
    c.dim = need("dim");
    c.heads = need("num_heads");
    c.ffn_dim = need("ffn_dim");
    c.layers = need("num_layers");
    c.in_dim = get("in_dim", 16);
    c.out_dim = get("out_dim", 16);
    c.freq_dim = get("freq_dim", 256);
    c.eps = get("eps", 1e-6);
    c.text_len = get("text_len", 512);
    c.text_dim = get("text_dim", 4096);
    const std::string type = get("model_type", std::string("t2v"));
    if (type != "t2v" && type != "t2i")
      throw std::runtime_error("model_type \"" + type + "\" is not supported (text-to-video only) in " + path.string());
  }
  validate_dit_config(c);
  return c;
}

void validate_dit_config(const DitConfig& c) {
  auto fail = [&](const std::string& what) { throw std::runtime_error("model " + c.name + ": " + what); };
  if (c.dim <= 0 || c.heads <= 0 || c.layers <= 0 || c.ffn_dim <= 0 || c.text_dim <= 0 || c.freq_dim <= 0)
    fail("dimensions must be positive");
  if (c.dim % c.heads != 0) fail("dim " + std::to_string(c.dim) + " does not divide into " + std::to_string(c.heads) + " heads");
  if (c.head_dim() % 2 != 0 || c.head_dim() < 6) fail("head_dim must be even and at least 6 (3-D RoPE)");
  if (c.freq_dim % 2 != 0) fail("freq_dim must be even");
  if (c.patch_t != 1 || c.patch_h != 2 || c.patch_w != 2) fail("only patch size (1,2,2) is supported");
  if (c.in_dim != 16 || c.out_dim != 16) fail("only 16-channel latents (text-to-video) are supported");
}

}  // namespace ditrun::wan

#include "model/text/umt5_config.h"

#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace ditrun::text {

Umt5Config umt5_config_xxl() {
  Umt5Config c;
  c.name = "umt5-xxl";
  return c;
}

Umt5Config umt5_config_tiny() {
  Umt5Config c;
  c.name = "tiny";
  c.vocab = 384;
  c.d_model = 64;
  c.layers = 2;
  c.heads = 4;
  c.d_kv = 16;
  c.d_ff = 128;
  return c;
}

Umt5Config umt5_config_named(const std::string& name) {
  if (name == "xxl" || name == "umt5-xxl") return umt5_config_xxl();
  if (name == "tiny") return umt5_config_tiny();
  throw std::runtime_error("unknown text encoder config \"" + name + "\" (tiny or xxl)");
}

Umt5Config umt5_config_from_json(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read text encoder config (" + file.string() + ")");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("invalid JSON in text encoder config: ") + e.what() + " (" + file.string() +
                             ")");
  }
  Umt5Config c;
  c.name = file.parent_path().filename().string();
  auto get = [&](const char* key, auto fallback) {
    if (!j.contains(key)) return fallback;
    if (!j[key].is_number())
      throw std::runtime_error(std::string("text encoder config key ") + key + " must be a number (" + file.string() +
                               ")");
    return j[key].get<decltype(fallback)>();
  };
  c.vocab = get("vocab_size", c.vocab);
  c.d_model = get("d_model", c.d_model);
  c.d_kv = get("d_kv", c.d_kv);
  c.d_ff = get("d_ff", c.d_ff);
  c.layers = get("num_layers", c.layers);
  c.heads = get("num_heads", c.heads);
  c.buckets = get("relative_attention_num_buckets", c.buckets);
  c.max_distance = get("relative_attention_max_distance", c.max_distance);
  c.eps = get("layer_norm_epsilon", c.eps);
  const std::string ffn = j.value("feed_forward_proj", std::string("gated-gelu"));
  if (ffn != "gated-gelu")
    throw std::runtime_error("text encoder feed_forward_proj is \"" + ffn + "\", only gated-gelu (umT5) is supported (" +
                             file.string() + ")");
  if (c.vocab <= 0 || c.d_model <= 0 || c.d_kv <= 0 || c.d_ff <= 0 || c.layers <= 0 || c.heads <= 0 ||
      c.buckets < 2 || c.buckets % 2 || c.max_distance <= c.buckets / 4)
    throw std::runtime_error("text encoder config has a non-positive or inconsistent size (" + file.string() + ")");
  return c;
}

}  // namespace ditrun::text

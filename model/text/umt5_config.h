// Shapes of the umT5 encoder (spec §5.1): umT5-XXL, the built-in tiny one, or an HF `text_encoder/config.json`.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

namespace ditrun::text {

struct Umt5Config {
  std::string name;
  int64_t vocab = 256384;
  int64_t d_model = 4096;
  int64_t layers = 24;
  int64_t heads = 64;
  int64_t d_kv = 64;  // per head; heads·d_kv = dim_attn
  int64_t d_ff = 10240;
  int buckets = 32;         // relative position buckets (bidirectional: half per direction)
  int max_distance = 128;
  float eps = 1e-6f;        // RMSNorm epsilon
  int64_t inner() const { return heads * d_kv; }
};

Umt5Config umt5_config_xxl();
// The tiny encoder of the built-in `tiny` model: d_model 64 = the tiny DiT's text_dim, 2 layers, 4 heads × 16,
// d_ff 128, vocabulary of the project's tiny SentencePiece model (384).
Umt5Config umt5_config_tiny();
// "xxl" or "tiny"; throws std::runtime_error otherwise.
Umt5Config umt5_config_named(const std::string& name);
// An HF UMT5/T5 config.json (d_model, d_kv, d_ff, num_layers, num_heads, vocab_size, relative_attention_*,
// layer_norm_epsilon; feed_forward_proj must be gated-gelu). Throws std::runtime_error naming the key.
Umt5Config umt5_config_from_json(const std::filesystem::path& file);

}  // namespace ditrun::text

// Where a text encoder comes from: the built-in tiny one (project SentencePiece model + seeded random umT5) or a
// Diffusers model folder (text_encoder/ + tokenizer/spiece.model). Resolved and checked before any GPU work; the
// weights id names exactly what produced an embedding (the key of the embedding cache).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "model/core/backend.h"
#include "model/text/tokenizer.h"
#include "model/text/umt5_config.h"
#include "model/text/umt5_encoder.h"

namespace ditrun::text {

struct TextEncoderSource {
  std::string spec;                                 // as the user gave it
  Umt5Config config;
  std::optional<std::filesystem::path> weights;     // text_encoder/ folder; empty = random (seed)
  std::optional<std::filesystem::path> tokenizer;   // spiece.model; empty = the tiny model compiled in
  uint64_t seed = 0;
  // "tiny:seed0:spm-<hash>" or "umt5:<hash>": a hash of the tokenizer model, the config and the weight files'
  // headers with samples of their data (no full read of 11 GB).
  std::string weights_id;
  std::string describe() const;
};

// "tiny", a Diffusers model root (with text_encoder/ and tokenizer/), or a text_encoder/ folder (its tokenizer at
// ../tokenizer/spiece.model or beside it). Checks config and tensor names/shapes (headers only). Throws
// std::runtime_error naming what is wrong.
TextEncoderSource resolve_text_encoder_source(const std::string& spec);

Tokenizer make_tokenizer(const TextEncoderSource& source);
Umt5Encoder make_text_encoder(Backend& backend, const TextEncoderSource& source);

// 64-bit FNV-1a, for ids and cache keys.
uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull);
std::string hex64(uint64_t v);

}  // namespace ditrun::text

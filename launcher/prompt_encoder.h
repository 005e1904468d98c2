// One rank's text encoder in a job (spec §5): a text's embedding comes from what this rank already has in this job,
// else from the embedding cache file (read here, never written: see save_cache), else from the tokenizer and the
// umT5 encoder, which are loaded on the first miss and can be let go when this rank has nothing left to encode.
// Used by `ditrun encode-text` and by the ranks that encode in `ditrun run` (launcher/text_role.h).
#pragma once
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/core/backend.h"
#include "model/text/embedding_cache.h"
#include "model/text/text_encoder_source.h"

namespace ditrun {

// An embedding this rank made, for the rank that writes the cache: the text and its encoder output.
using NewCacheEntry = std::pair<std::string, text::CachedEmbedding>;

class PromptEncoder {
 public:
  // backend: where the encoder runs (the DiT's own in the shared role). cache: the cache file, or none.
  PromptEncoder(const text::TextEncoderSource& source, Backend& backend, std::optional<std::filesystem::path> cache);

  // [rows, d_model] f32 of `text`, valid as long as this object. `encoded` (optional) tells whether the encoder ran.
  const text::CachedEmbedding& embed(const std::string& text, bool* encoded = nullptr);
  // Frees the tokenizer and encoder weights (a later miss loads them again).
  void release_encoder();

  // The embeddings this rank encoded (the cache misses), for the rank that writes the cache file.
  std::vector<std::pair<std::string, const text::CachedEmbedding*>> new_entries() const;
  // Writes the cache file (through .part) with this rank's new entries and `others` (other ranks' new entries).
  // Only one rank of a job calls it: HDF5 files take no concurrent writers.
  void save_cache(std::vector<NewCacheEntry> others);

  const text::TextEncoderSource& source() const { return source_; }
  size_t texts() const { return texts_; }          // distinct texts asked for
  size_t hits() const { return hits_; }            // of those, found in the cache
  size_t encoded() const { return encoded_; }      // of those, run through the encoder
  double seconds() const { return seconds_; }      // time in embed() (model load included)

 private:
  struct Known {
    text::CachedEmbedding embedding;
    bool is_new = false;  // encoded here, not yet in the cache file
  };
  const text::TextEncoderSource& source_;
  Backend& backend_;
  std::optional<text::EmbeddingCache> cache_;
  std::optional<text::Tokenizer> tokenizer_;
  std::optional<text::Umt5Encoder> encoder_;
  std::map<std::string, Known> known_;
  size_t texts_ = 0, hits_ = 0, encoded_ = 0;
  double seconds_ = 0;
};

}  // namespace ditrun

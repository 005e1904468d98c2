// The text embedding cache: an HDF5 file of encoder outputs keyed by (encoder weights id, prompt text), so that a
// rerun, or another job with the same prompts, skips the encoder. Layout:
//   /e/<16 hex of FNV-1a(weights id, 0, prompt)>  [L, d_model] f32, attributes `weights_id`, `prompt`
//   /index  [entries] i64: the 64-bit keys of the entries (the hex of e/<key>)
// A hit needs both attributes to match exactly (a hash collision is a miss). New entries are kept in memory and
// save() rewrites the file through `.part` (old entries copied), so the cache is complete or absent.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ditrun::text {

struct CachedEmbedding {
  std::vector<float> values;
  int64_t rows = 0;
  int64_t dim = 0;
};

class EmbeddingCache {
 public:
  // Opens `path` when it exists (an unreadable cache is a std::runtime_error naming it); else starts empty.
  explicit EmbeddingCache(std::filesystem::path path);

  std::optional<CachedEmbedding> find(const std::string& weights_id, const std::string& prompt) const;
  void put(const std::string& weights_id, const std::string& prompt, CachedEmbedding embedding);
  // Entries added since opening.
  size_t added() const { return added_.size(); }
  size_t size() const { return keys_.size() + added_.size(); }
  // Writes the file when something was added.
  void save();

  static std::string key(const std::string& weights_id, const std::string& prompt);

 private:
  struct Entry {
    std::string weights_id, prompt;
    CachedEmbedding embedding;
  };
  std::filesystem::path path_;
  std::vector<std::string> keys_;  // entries in the file
  std::map<std::string, Entry> added_;
};

}  // namespace ditrun::text

#include "model/text/embedding_cache.h"

#include <stdexcept>

#include "io/hdf5_file.h"
#include "model/text/text_encoder_source.h"

namespace ditrun::text {

namespace fs = std::filesystem;

std::string EmbeddingCache::key(const std::string& weights_id, const std::string& prompt) {
  return "e/" + hex64(fnv1a64(prompt, fnv1a64(std::string_view("\0", 1), fnv1a64(weights_id))));
}

EmbeddingCache::EmbeddingCache(fs::path path) : path_(std::move(path)) {
  if (!fs::exists(path_)) return;
  try {
    io::Hdf5File f(path_, io::Hdf5File::Mode::read);
    if (f.has("index"))
      for (int64_t h : f.read_i64("index")) keys_.push_back("e/" + hex64(static_cast<uint64_t>(h)));
  } catch (const io::Hdf5Error& e) {
    throw std::runtime_error(std::string("embedding cache is not readable: ") + e.what());
  }
}

std::optional<CachedEmbedding> EmbeddingCache::find(const std::string& weights_id, const std::string& prompt) const {
  const std::string k = key(weights_id, prompt);
  if (auto it = added_.find(k); it != added_.end()) {
    if (it->second.weights_id == weights_id && it->second.prompt == prompt) return it->second.embedding;
    return std::nullopt;
  }
  if (!fs::exists(path_)) return std::nullopt;
  io::Hdf5File f(path_, io::Hdf5File::Mode::read);
  if (!f.has(k) || f.read_attribute(k, "weights_id") != weights_id || f.read_attribute(k, "prompt") != prompt)
    return std::nullopt;
  CachedEmbedding e;
  std::vector<int64_t> shape;
  e.values = f.read_f32(k, &shape);
  if (shape.size() != 2) return std::nullopt;
  e.rows = shape[0];
  e.dim = shape[1];
  return e;
}

void EmbeddingCache::put(const std::string& weights_id, const std::string& prompt, CachedEmbedding embedding) {
  added_[key(weights_id, prompt)] = Entry{weights_id, prompt, std::move(embedding)};
}

void EmbeddingCache::save() {
  if (added_.empty()) return;
  std::vector<std::string> all;
  {
    io::Hdf5Writer writer(path_);
    io::Hdf5File& out = writer.file();
    auto write = [&](const std::string& k, const std::string& weights_id, const std::string& prompt,
                     const CachedEmbedding& e) {
      out.write_f32(k, e.values.data(), {e.rows, e.dim});
      out.write_attribute(k, "weights_id", weights_id);
      out.write_attribute(k, "prompt", prompt);
      all.push_back(k);
    };
    if (fs::exists(path_)) {
      io::Hdf5File in(path_, io::Hdf5File::Mode::read);
      for (const std::string& k : keys_) {
        if (added_.count(k) || !in.has(k)) continue;  // replaced (collision) or lost: drop
        std::vector<int64_t> shape;
        CachedEmbedding e;
        e.values = in.read_f32(k, &shape);
        e.rows = shape.at(0);
        e.dim = shape.at(1);
        write(k, in.read_attribute(k, "weights_id"), in.read_attribute(k, "prompt"), e);
      }
    }
    for (const auto& [k, entry] : added_) write(k, entry.weights_id, entry.prompt, entry.embedding);
    std::vector<int64_t> index;
    for (const std::string& k : all) index.push_back(static_cast<int64_t>(std::stoull(k.substr(2), nullptr, 16)));
    out.write_i64("index", index.data(), {static_cast<int64_t>(index.size())});
    writer.commit();
  }
  keys_ = std::move(all);
  added_.clear();
}

}  // namespace ditrun::text

#include "launcher/text_embeddings.h"

#include <chrono>
#include <map>
#include <memory>
#include <span>

#include "io/hdf5_file.h"
#include "model/core/backend.h"
#include "model/text/embedding_cache.h"

namespace ditrun {

TextEncodeSummary encode_prompts(const text::TextEncoderSource& source, const std::vector<PromptItem>& prompts,
                                 const std::string& default_negative, const std::filesystem::path& output,
                                 const std::optional<std::filesystem::path>& cache_path, const std::string& backend) {
  std::optional<text::EmbeddingCache> cache;
  if (cache_path) cache.emplace(*cache_path);
  std::vector<std::string> texts;
  std::map<std::string, size_t> index_of;
  auto want = [&](const std::string& t) {
    if (index_of.emplace(t, texts.size()).second) texts.push_back(t);
  };
  for (const PromptItem& p : prompts) want(p.prompt);
  want(default_negative);
  for (const PromptItem& p : prompts) want(p.negative_prompt);

  std::vector<text::CachedEmbedding> embeddings(texts.size());
  std::vector<size_t> misses;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (cache)
      if (auto hit = cache->find(source.weights_id, texts[i]); hit && hit->dim == source.config.d_model) {
        embeddings[i] = std::move(*hit);
        continue;
      }
    misses.push_back(i);
  }
  const auto start = std::chrono::steady_clock::now();
  if (!misses.empty()) {
    std::unique_ptr<Backend> be = backend == "cuda" ? make_cuda_backend() : make_cpu_backend();
    const text::Tokenizer tokenizer = text::make_tokenizer(source);
    text::Umt5Encoder encoder = text::make_text_encoder(*be, source);
    for (size_t i : misses) {
      const text::TokenizedPrompt t = tokenizer.encode(texts[i]);
      embeddings[i].values = encoder.encode(std::span<const int32_t>(t.ids).first(static_cast<size_t>(t.length)));
      embeddings[i].rows = t.length;
      embeddings[i].dim = source.config.d_model;
      if (cache) cache->put(source.weights_id, texts[i], embeddings[i]);
    }
  }
  TextEncodeSummary summary{texts.size(), texts.size() - misses.size(), misses.size(),
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};

  io::Hdf5Writer writer(output);
  io::Hdf5File& out = writer.file();
  auto write = [&](const std::string& name, const std::string& text) {
    const text::CachedEmbedding& e = embeddings[index_of.at(text)];
    out.write_f32(name, e.values.data(), {e.rows, e.dim});
    out.write_attribute(name, "prompt", text);
  };
  for (const PromptItem& p : prompts) {
    write(p.id + "/context", p.prompt);
    if (p.negative_prompt != default_negative) write(p.id + "/context_null", p.negative_prompt);
  }
  write("negative/context", default_negative);
  out.write_attribute("/", "text_encoder", source.describe());
  out.write_attribute("/", "weights_id", source.weights_id);
  writer.commit();
  if (cache) cache->save();
  return summary;
}

}  // namespace ditrun

#include "launcher/prompt_encoder.h"

#include <span>

namespace ditrun {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

PromptEncoder::PromptEncoder(const text::TextEncoderSource& source, Backend& backend,
                             std::optional<std::filesystem::path> cache)
    : source_(source), backend_(backend) {
  if (cache) cache_.emplace(*cache);
}

const text::CachedEmbedding& PromptEncoder::embed(const std::string& text, bool* encoded) {
  if (encoded) *encoded = false;
  if (auto it = known_.find(text); it != known_.end()) return it->second.embedding;
  const auto start = std::chrono::steady_clock::now();
  Known k;
  std::optional<text::CachedEmbedding> hit;
  if (cache_) hit = cache_->find(source_.weights_id, text);
  if (hit && hit->dim == source_.config.d_model) {
    k.embedding = std::move(*hit);
    ++hits_;
  } else {
    if (!encoder_) {
      tokenizer_.emplace(text::make_tokenizer(source_));
      encoder_.emplace(text::make_text_encoder(backend_, source_));
    }
    const text::TokenizedPrompt t = tokenizer_->encode(text);
    k.embedding.values = encoder_->encode(std::span<const int32_t>(t.ids).first(static_cast<size_t>(t.length)));
    k.embedding.rows = t.length;
    k.embedding.dim = source_.config.d_model;
    k.is_new = true;
    ++encoded_;
    if (encoded) *encoded = true;
  }
  seconds_ += seconds_since(start);
  ++texts_;
  return known_.emplace(text, std::move(k)).first->second.embedding;
}

void PromptEncoder::release_encoder() {
  encoder_.reset();
  tokenizer_.reset();
}

std::vector<std::pair<std::string, const text::CachedEmbedding*>> PromptEncoder::new_entries() const {
  std::vector<std::pair<std::string, const text::CachedEmbedding*>> out;
  for (const auto& [text, k] : known_)
    if (k.is_new) out.emplace_back(text, &k.embedding);
  return out;
}

void PromptEncoder::save_cache(std::vector<NewCacheEntry> others) {
  if (!cache_) return;
  for (const auto& [text, k] : known_)
    if (k.is_new) cache_->put(source_.weights_id, text, k.embedding);  // copied: sends may still read ours
  for (auto& [text, e] : others) cache_->put(source_.weights_id, text, std::move(e));
  cache_->save();
  for (auto& [text, k] : known_) k.is_new = false;
}

}  // namespace ditrun

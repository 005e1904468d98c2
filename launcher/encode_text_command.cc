// `ditrun encode-text`: prompts (JSONL manifest) to text embeddings (HDF5), through the tokenizer and the umT5
// encoder (spec §5), with an embedding cache keyed by (encoder weights id, prompt text). One process.
//   out.h5: <id>/context [L, d_model] f32 (the real-length rows, spec §5.2), negative/context for the default
//           negative prompt, <id>/context_null for a prompt whose negative differs from it: the layout
//           `ditrun run` reads (launcher/embeddings.h).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "io/hdf5_file.h"
#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "launcher/manifest.h"
#include "model/core/backend.h"
#include "model/text/embedding_cache.h"
#include "model/text/text_encoder_source.h"

namespace ditrun {

namespace {

struct TextJob {
  text::TextEncoderSource source;
  std::vector<PromptItem> prompts;
  std::filesystem::path cache_path;
};

TextJob check_input(const EncodeTextOptions& o) {
  TextJob job;
  if (o.backend != "cpu" && o.backend != "cuda")
    throw InputError("backend must be cpu or cuda, got \"" + o.backend + "\"", "--backend");
  try {
    job.source = text::resolve_text_encoder_source(o.model);
  } catch (const std::exception& e) {
    throw InputError(e.what(), "--model");
  }
  if (!std::filesystem::is_regular_file(o.input)) throw InputError("manifest file does not exist", o.input);
  // The manifest's own checks: invalid JSON, missing prompt, duplicate id, unknown keys name the line.
  job.prompts = load_manifest(o.input, SamplingParams{}, o.negative_prompt, 0);
  if (job.prompts.empty()) throw InputError("the manifest has no prompts", o.input);
  if (std::filesystem::is_directory(o.output)) throw InputError("output is a directory", o.output);
  const std::filesystem::path out_dir = std::filesystem::path(o.output).parent_path();
  job.cache_path = o.cache.empty() ? out_dir / "text_embedding_cache.h5" : std::filesystem::path(o.cache);
  if (o.cache != "none" && std::filesystem::is_directory(job.cache_path))
    throw InputError("cache is a directory", "--cache");
  return job;
}

}  // namespace

int encode_text_command(const EncodeTextOptions& o) {
  TextJob job;
  std::optional<text::EmbeddingCache> cache;
  try {
    job = check_input(o);
    if (o.cache != "none") {
      try {
        cache.emplace(job.cache_path);
      } catch (const std::exception& e) {
        throw InputError(e.what(), job.cache_path.string());
      }
    }
  } catch (const InputError& e) {
    print_input_error(e.what(), e.where());
    return 2;
  }

  // Every distinct text once: the prompts, the default negative, and the prompts' own negatives.
  std::vector<std::string> texts;
  std::map<std::string, size_t> index_of;
  auto want = [&](const std::string& t) {
    if (index_of.emplace(t, texts.size()).second) texts.push_back(t);
  };
  for (const PromptItem& p : job.prompts) want(p.prompt);
  want(o.negative_prompt);
  for (const PromptItem& p : job.prompts) want(p.negative_prompt);

  std::vector<text::CachedEmbedding> embeddings(texts.size());
  std::vector<size_t> misses;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (cache)
      if (auto hit = cache->find(job.source.weights_id, texts[i]); hit && hit->dim == job.source.config.d_model) {
        embeddings[i] = std::move(*hit);
        continue;
      }
    misses.push_back(i);
  }

  const auto start = std::chrono::steady_clock::now();
  if (!misses.empty()) {
    std::unique_ptr<Backend> backend = o.backend == "cuda" ? make_cuda_backend() : make_cpu_backend();
    const text::Tokenizer tokenizer = text::make_tokenizer(job.source);
    text::Umt5Encoder encoder = text::make_text_encoder(*backend, job.source);
    for (size_t i : misses) {
      const text::TokenizedPrompt t = tokenizer.encode(texts[i]);
      embeddings[i].values = encoder.encode(std::span<const int32_t>(t.ids).first(static_cast<size_t>(t.length)));
      embeddings[i].rows = t.length;
      embeddings[i].dim = job.source.config.d_model;
      if (cache) cache->put(job.source.weights_id, texts[i], embeddings[i]);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  io::Hdf5Writer writer(o.output);
  io::Hdf5File& out = writer.file();
  auto write = [&](const std::string& name, const std::string& text) {
    const text::CachedEmbedding& e = embeddings[index_of.at(text)];
    out.write_f32(name, e.values.data(), {e.rows, e.dim});
    out.write_attribute(name, "prompt", text);
  };
  for (const PromptItem& p : job.prompts) {
    write(p.id + "/context", p.prompt);
    if (p.negative_prompt != o.negative_prompt) write(p.id + "/context_null", p.negative_prompt);
  }
  write("negative/context", o.negative_prompt);
  out.write_attribute("/", "text_encoder", job.source.describe());
  out.write_attribute("/", "weights_id", job.source.weights_id);
  writer.commit();
  if (cache) cache->save();

  std::printf("encode-text: %s, %zu prompts, %zu distinct texts: %zu cache hits, %zu encoded (%.2f s)%s\n",
              job.source.describe().c_str(), job.prompts.size(), texts.size(), texts.size() - misses.size(),
              misses.size(), seconds,
              cache ? (", cache " + job.cache_path.string()).c_str() : ", no cache");
  std::printf("encode-text: wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace ditrun

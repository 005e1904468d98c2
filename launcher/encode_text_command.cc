// `ditrun encode-text`: prompts (JSONL manifest) to text embeddings (HDF5), through the tokenizer and the umT5
// encoder (spec §5), with an embedding cache keyed by (encoder weights id, prompt text). One process.
//   out.h5: <id>/context [L, d_model] f32 (the real-length rows, spec §5.2), negative/context for the default
//           negative prompt, <id>/context_null for a prompt whose negative differs from it: the layout
//           `ditrun run` reads (launcher/embeddings.h).
#include <cstdio>
#include <filesystem>
#include <optional>

#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "launcher/manifest.h"
#include "launcher/text_embeddings.h"
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
  try {
    job = check_input(o);
    if (o.cache != "none") {
      try {
        text::EmbeddingCache probe(job.cache_path);  // an unreadable cache is bad input, before any work
      } catch (const std::exception& e) {
        throw InputError(e.what(), job.cache_path.string());
      }
    }
  } catch (const InputError& e) {
    print_input_error(e.what(), e.where());
    return 2;
  }
  const std::optional<std::filesystem::path> cache =
      o.cache == "none" ? std::nullopt : std::optional<std::filesystem::path>(job.cache_path);
  const TextEncodeSummary s = encode_prompts(job.source, job.prompts, o.negative_prompt, o.output, cache, o.backend);
  std::printf("encode-text: %s, %zu prompts, %zu distinct texts: %zu cache hits, %zu encoded (%.2f s)%s\n",
              job.source.describe().c_str(), job.prompts.size(), s.texts, s.hits, s.encoded, s.seconds,
              cache ? (", cache " + job.cache_path.string()).c_str() : ", no cache");
  std::printf("encode-text: wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace ditrun

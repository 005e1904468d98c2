// Prompts to the embeddings file `ditrun run` reads (launcher/embeddings.h): every distinct text once (the
// prompts, the default negative, the prompts' own negatives), through the embedding cache, then
//   <id>/context [L, d_model] f32 (the real-length rows, spec §5.2), negative/context for the default negative,
//   <id>/context_null for a prompt whose negative differs from it.
// `ditrun encode-text`'s work; `ditrun run` encodes with the same PromptEncoder, prompt by prompt
// (launcher/text_role.h).
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "launcher/job.h"
#include "model/text/text_encoder_source.h"

namespace ditrun {

struct TextEncodeSummary {
  size_t texts = 0;     // distinct texts
  size_t hits = 0;      // found in the cache
  size_t encoded = 0;   // run through the encoder
  double seconds = 0;   // encoding time (model load included)
};

// Writes `output` (through .part). cache: the cache file, or empty for none. backend: "cpu" or "cuda".
TextEncodeSummary encode_prompts(const text::TextEncoderSource& source, const std::vector<PromptItem>& prompts,
                                 const std::string& default_negative, const std::filesystem::path& output,
                                 const std::optional<std::filesystem::path>& cache, const std::string& backend);

}  // namespace ditrun

// Text embeddings as the DiT ranks of `ditrun run` get them: the interface, and the HDF5 file prompts.embeddings:
//   /<id>/context        [L ≤ 512, text_dim] f32: the prompt's umT5 output, cut to its real length
//   /<id>/context_null   [L, text_dim]: its negative prompt (optional)
//   /negative/context    [L, text_dim]: the negative used by prompts without their own (optional)
// A negative is needed only when guidance ≠ 1.
#pragma once
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "launcher/job.h"

namespace ditrun {

struct Embedding {
  std::vector<float> values;
  int64_t rows = 0;
};

// A prompt's embeddings as one DiT rank needs them: the context for the conditional pass, the negative for the
// unconditional one.
struct PromptEmbedding {
  std::optional<Embedding> context, negative;
};

// Where a DiT rank gets them: the file below, or the text role (launcher/text_role.h).
class PromptEmbeddings {
 public:
  virtual ~PromptEmbeddings() = default;
  // Prompt `index` of this run's prompts, asked by every DiT rank of its replica before it denoises it, in order.
  virtual PromptEmbedding get(size_t index, const PromptItem& prompt, bool context, bool negative) = 0;
};

class EmbeddingFile : public PromptEmbeddings {
 public:
  // Opens the file and checks that every prompt has what it needs with the right shape. Throws InputError.
  EmbeddingFile(const std::filesystem::path& path, const std::vector<PromptItem>& prompts, int text_dim,
                int text_len);
  Embedding context(const std::string& id) const;
  Embedding negative(const std::string& id) const;
  PromptEmbedding get(size_t index, const PromptItem& prompt, bool context, bool negative) override;

 private:
  std::filesystem::path path_;
  int text_dim_;
  int text_len_;
};

}  // namespace ditrun

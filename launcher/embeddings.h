// Text embeddings from an HDF5 file (prompts.embeddings), the input of `ditrun run` until the text encoder lands:
//   /<id>/context        [L ≤ 512, text_dim] f32: the prompt's umT5 output, cut to its real length
//   /<id>/context_null   [L, text_dim]: its negative prompt (optional)
//   /negative/context    [L, text_dim]: the negative used by prompts without their own (optional)
// A negative is needed only when guidance ≠ 1.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "launcher/job.h"

namespace ditrun {

struct Embedding {
  std::vector<float> values;
  int64_t rows = 0;
};

class EmbeddingFile {
 public:
  // Opens the file and checks that every prompt has what it needs with the right shape. Throws InputError.
  EmbeddingFile(const std::filesystem::path& path, const std::vector<PromptItem>& prompts, int text_dim,
                int text_len);
  Embedding context(const std::string& id) const;
  Embedding negative(const std::string& id) const;

 private:
  std::filesystem::path path_;
  int text_dim_;
  int text_len_;
};

}  // namespace ditrun

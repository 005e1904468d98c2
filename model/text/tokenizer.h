// The umT5 tokenizer (spec §5.2): the prompt clean-up, SentencePiece (the real library) on a `spiece.model`,
// EOS `</s>` = 1 appended, truncation and padding to the text length (512) with pad = 0.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ditrun::text {

inline constexpr int kPadId = 0;
inline constexpr int kEosId = 1;
inline constexpr int kTextLen = 512;

struct TokenizedPrompt {
  std::vector<int32_t> ids;  // text_len entries: the real tokens, EOS, then pad (0)
  int length = 0;            // real tokens including EOS (= mask.sum(), spec §5.2); the mask is ids[0, length)
};

class Tokenizer {
 public:
  // A SentencePiece model file (the Diffusers `tokenizer/spiece.model`). Throws std::runtime_error naming the file.
  static Tokenizer from_file(const std::filesystem::path& spiece_model);
  // The project's tiny model (model/text/tiny_spm/spiece.model, compiled into the binary).
  static Tokenizer tiny();

  // Clean-up, SentencePiece, then add_special_tokens / truncation / max_length padding as HF does: at most
  // text_len − 1 pieces, EOS, pad.
  TokenizedPrompt encode(std::string_view prompt, int text_len = kTextLen) const;
  // Ids of already cleaned text (no EOS, no truncation): special pieces written literally ("</s>", "<pad>",
  // "<unk>") are their ids, the text between them goes through SentencePiece piece by piece, as in transformers.
  std::vector<int32_t> piece_ids(std::string_view cleaned) const;
  int vocab_size() const;
  // What the model is: "tiny" or the file path (for messages and the cache key).
  const std::string& describe() const { return describe_; }
  // The serialized model (hashed into the encoder's weights id).
  const std::string& model_bytes() const { return model_bytes_; }

 private:
  Tokenizer(std::string model_bytes, std::string describe);
  struct Special {
    std::string text;
    int32_t id;
  };
  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<Special> specials_;  // control and unknown pieces matched literally in the text
  std::string model_bytes_;
  std::string describe_;
};

}  // namespace ditrun::text

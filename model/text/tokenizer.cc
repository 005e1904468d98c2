#include "model/text/tokenizer.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <sentencepiece_processor.h>

#include "model/text/text_clean.h"

namespace ditrun::text {

// Generated at configure time from model/text/tiny_spm/spiece.model (model/CMakeLists.txt).
extern const unsigned char kTinySpmModel[];
extern const size_t kTinySpmModelSize;

Tokenizer::Tokenizer(std::string model_bytes, std::string describe)
    : sp_(std::make_shared<sentencepiece::SentencePieceProcessor>()),
      model_bytes_(std::move(model_bytes)),
      describe_(std::move(describe)) {
  const auto status = sp_->LoadFromSerializedProto(model_bytes_);
  if (!status.ok()) throw std::runtime_error("not a SentencePiece model: " + status.ToString() + " (" + describe_ + ")");
  // T5's special ids (spec §5.2): pad 0, EOS 1; a model with other ids would pad or end prompts wrongly.
  if (sp_->PieceToId("</s>") != kEosId || sp_->eos_id() != kEosId)
    throw std::runtime_error("SentencePiece model has EOS id " + std::to_string(sp_->eos_id()) + ", expected " +
                             std::to_string(kEosId) + " (" + describe_ + ")");
  for (int id = 0; id < sp_->GetPieceSize(); ++id)
    if (sp_->IsControl(id) || sp_->IsUnknown(id)) {
      const std::string piece = sp_->IdToPiece(id);
      if (!piece.empty() && piece[0] == '<') specials_.push_back({piece, id});
    }
}

Tokenizer Tokenizer::from_file(const std::filesystem::path& spiece_model) {
  std::ifstream in(spiece_model, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read tokenizer model (" + spiece_model.string() + ")");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return Tokenizer(bytes.str(), spiece_model.string());
}

Tokenizer Tokenizer::tiny() {
  return Tokenizer(std::string(reinterpret_cast<const char*>(kTinySpmModel), kTinySpmModelSize), "tiny");
}

std::vector<int32_t> Tokenizer::piece_ids(std::string_view cleaned) const {
  // As transformers does with its special (added) tokens: the literal text of a control or unknown piece ("</s>",
  // "<pad>", "<unk>") becomes that id, and SentencePiece encodes each stretch of text between them on its own.
  std::vector<int32_t> out;
  std::vector<int> ids;
  auto encode_segment = [&](std::string_view segment) {
    if (segment.empty()) return;
    const auto status = sp_->Encode(segment, &ids);
    if (!status.ok()) throw std::runtime_error("SentencePiece failed: " + status.ToString() + " (" + describe_ + ")");
    out.insert(out.end(), ids.begin(), ids.end());
  };
  size_t start = 0, pos = 0;
  while (pos < cleaned.size()) {
    const Special* match = nullptr;
    if (cleaned[pos] == '<')
      for (const Special& s : specials_)
        if (cleaned.compare(pos, s.text.size(), s.text) == 0 && (!match || s.text.size() > match->text.size()))
          match = &s;
    if (!match) {
      ++pos;
      continue;
    }
    encode_segment(cleaned.substr(start, pos - start));
    out.push_back(match->id);
    pos += match->text.size();
    start = pos;
  }
  encode_segment(cleaned.substr(start));
  return out;
}

TokenizedPrompt Tokenizer::encode(std::string_view prompt, int text_len) const {
  std::vector<int32_t> pieces = piece_ids(clean_prompt(prompt));
  if (static_cast<int>(pieces.size()) > text_len - 1) pieces.resize(static_cast<size_t>(text_len - 1));
  TokenizedPrompt t;
  t.ids = std::move(pieces);
  t.ids.push_back(kEosId);
  t.length = static_cast<int>(t.ids.size());
  t.ids.resize(static_cast<size_t>(text_len), kPadId);
  return t;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

}  // namespace ditrun::text

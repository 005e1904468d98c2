#include "model/text/text_encoder_source.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace ditrun::text {

namespace fs = std::filesystem;

uint64_t fnv1a64(std::string_view bytes, uint64_t h) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

namespace {

std::string read_bytes(const fs::path& file, uint64_t offset = 0, uint64_t count = UINT64_MAX) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out;
  if (count == UINT64_MAX) {
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  out.resize(count);
  in.read(out.data(), static_cast<std::streamsize>(count));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// Header of every safetensors file plus 16 samples of 4 KiB of its data, and the config: a fine-tune with the same
// header differs in the samples; nothing is read in full.
uint64_t hash_weights(const fs::path& dir, uint64_t h) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" || e.path().filename() == "config.json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    h = fnv1a64(f.filename().string(), h);
    const uint64_t size = fs::file_size(f);
    if (f.extension() != ".safetensors" || size <= 64 * 4096) {
      h = fnv1a64(read_bytes(f), h);
      continue;
    }
    const std::string len_bytes = read_bytes(f, 0, 8);
    uint64_t header = 0;
    for (int i = 7; i >= 0 && len_bytes.size() == 8; --i) header = header << 8 | static_cast<unsigned char>(len_bytes[i]);
    h = fnv1a64(read_bytes(f, 0, std::min<uint64_t>(8 + header, size)), h);
    for (uint64_t k = 0; k < 16; ++k) h = fnv1a64(read_bytes(f, (size - 4096) / 15 * k, 4096), h);
  }
  return h;
}

}  // namespace

std::string TextEncoderSource::describe() const {
  if (!weights) return "tiny text encoder (umT5 " + config.name + ", random seed " + std::to_string(seed) + ")";
  return "umT5 " + config.name + " from " + weights->string();
}

TextEncoderSource resolve_text_encoder_source(const std::string& spec) {
  TextEncoderSource s;
  s.spec = spec;
  if (spec == "tiny") {
    s.config = umt5_config_tiny();
    const Tokenizer tiny = Tokenizer::tiny();
    s.weights_id = "tiny:seed0:spm-" + hex64(fnv1a64(tiny.model_bytes()));
    return s;
  }
  const fs::path dir(spec);
  if (!fs::is_directory(dir))
    throw std::runtime_error("text encoder must be \"tiny\" or a model folder; no folder " + spec);
  fs::path weights = dir, tokenizer;
  if (fs::is_directory(dir / "text_encoder")) {
    weights = dir / "text_encoder";
    tokenizer = dir / "tokenizer" / "spiece.model";
  } else if (fs::is_regular_file(dir / "spiece.model")) {
    tokenizer = dir / "spiece.model";
  } else {
    tokenizer = dir.parent_path() / "tokenizer" / "spiece.model";
  }
  if (!fs::is_regular_file(weights / "config.json"))
    throw std::runtime_error("no text encoder config.json in " + weights.string());
  if (!fs::is_regular_file(tokenizer))
    throw std::runtime_error("no tokenizer model " + tokenizer.string() + " (the Diffusers tokenizer/spiece.model)");
  s.config = umt5_config_from_json(weights / "config.json");
  check_umt5_checkpoint(s.config, weights);
  const Tokenizer tok = Tokenizer::from_file(tokenizer);
  if (tok.vocab_size() > s.config.vocab)
    throw std::runtime_error("tokenizer has " + std::to_string(tok.vocab_size()) + " pieces, more than the encoder's "
                             "vocabulary of " + std::to_string(s.config.vocab) + " (" + tokenizer.string() + ")");
  s.weights = weights;
  s.tokenizer = tokenizer;
  s.weights_id = "umt5:" + hex64(hash_weights(weights, fnv1a64(tok.model_bytes())));
  return s;
}

Tokenizer make_tokenizer(const TextEncoderSource& source) {
  return source.tokenizer ? Tokenizer::from_file(*source.tokenizer) : Tokenizer::tiny();
}

Umt5Encoder make_text_encoder(Backend& backend, const TextEncoderSource& source) {
  Umt5Weights w = source.weights ? load_umt5_weights(backend, source.config, *source.weights)
                                 : random_umt5_weights(backend, source.config, source.seed);
  return Umt5Encoder(backend, source.config, std::move(w));
}

}  // namespace ditrun::text

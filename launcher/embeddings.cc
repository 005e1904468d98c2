#include "launcher/embeddings.h"

#include "io/hdf5_file.h"
#include "launcher/input_error.h"
#include "model/core/tensor.h"

namespace ditrun {

namespace {

void check_shape(const io::Hdf5File& f, const std::string& name, int text_dim, int text_len, const std::string& where) {
  const auto shape = f.shape(name);
  if (shape.size() != 2 || shape[1] != text_dim || shape[0] < 1 || shape[0] > text_len)
    throw InputError(name + " has shape " + shape_string(shape) + ", expected [L ≤ " + std::to_string(text_len) +
                         ", " + std::to_string(text_dim) + "] for this model",
                     where);
}

}  // namespace

EmbeddingFile::EmbeddingFile(const std::filesystem::path& path, const std::vector<PromptItem>& prompts, int text_dim,
                             int text_len)
    : path_(path), text_dim_(text_dim), text_len_(text_len) {
  const std::string where = path.string();
  if (!std::filesystem::is_regular_file(path)) throw InputError("embeddings file does not exist", where);
  try {
    io::Hdf5File f(path, io::Hdf5File::Mode::read);
    const bool shared_negative = f.has("negative/context");
    if (shared_negative) check_shape(f, "negative/context", text_dim, text_len, where);
    for (const PromptItem& p : prompts) {
      const std::string context = p.id + "/context";
      if (!f.has(context)) throw InputError("no dataset " + context + " for prompt " + p.id, where);
      check_shape(f, context, text_dim, text_len, where);
      if (f.has(p.id + "/context_null")) check_shape(f, p.id + "/context_null", text_dim, text_len, where);
      else if (p.sampling.guidance != 1.0 && !shared_negative)
        throw InputError("prompt " + p.id + " needs a negative embedding (guidance " +
                             std::to_string(p.sampling.guidance) + "): no " + p.id +
                             "/context_null and no negative/context",
                         where);
    }
  } catch (const io::Hdf5Error& e) {
    throw InputError(e.what(), where);
  }
}

Embedding EmbeddingFile::context(const std::string& id) const {
  io::Hdf5File f(path_, io::Hdf5File::Mode::read);
  std::vector<int64_t> shape;
  Embedding e;
  e.values = f.read_f32(id + "/context", &shape);
  e.rows = shape[0];
  return e;
}

Embedding EmbeddingFile::negative(const std::string& id) const {
  io::Hdf5File f(path_, io::Hdf5File::Mode::read);
  std::vector<int64_t> shape;
  Embedding e;
  e.values = f.read_f32(f.has(id + "/context_null") ? id + "/context_null" : "negative/context", &shape);
  e.rows = shape[0];
  return e;
}

PromptEmbedding EmbeddingFile::get(size_t, const PromptItem& prompt, bool want_context, bool want_negative) {
  PromptEmbedding e;
  if (want_context) e.context = context(prompt.id);
  if (want_negative) e.negative = negative(prompt.id);
  return e;
}

}  // namespace ditrun

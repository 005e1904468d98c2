#include "launcher/text_embeddings.h"

#include <memory>

#include "io/hdf5_file.h"
#include "launcher/prompt_encoder.h"
#include "model/core/backend.h"

namespace ditrun {

TextEncodeSummary encode_prompts(const text::TextEncoderSource& source, const std::vector<PromptItem>& prompts,
                                 const std::string& default_negative, const std::filesystem::path& output,
                                 const std::optional<std::filesystem::path>& cache_path, const std::string& backend) {
  std::unique_ptr<Backend> be = backend == "cuda" ? make_cuda_backend() : make_cpu_backend();
  PromptEncoder encoder(source, *be, cache_path);

  io::Hdf5Writer writer(output);
  io::Hdf5File& out = writer.file();
  auto write = [&](const std::string& name, const std::string& text) {
    const text::CachedEmbedding& e = encoder.embed(text);
    out.write_f32(name, e.values.data(), {e.rows, e.dim});
    out.write_attribute(name, "prompt", text);
  };
  for (const PromptItem& p : prompts) write(p.id + "/context", p.prompt);
  write("negative/context", default_negative);
  for (const PromptItem& p : prompts)
    if (p.negative_prompt != default_negative) write(p.id + "/context_null", p.negative_prompt);
  out.write_attribute("/", "text_encoder", source.describe());
  out.write_attribute("/", "weights_id", source.weights_id);
  writer.commit();
  encoder.save_cache({});
  return {encoder.texts(), encoder.hits(), encoder.encoded(), encoder.seconds()};
}

}  // namespace ditrun

#include "model/text/umt5_weights.h"

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "io/safetensors.h"
#include "model/core/philox.h"

namespace ditrun::text {

namespace {

constexpr const char* kEmbedding = "shared.weight";
constexpr const char* kTiedEmbedding = "encoder.embed_tokens.weight";  // the same tensor, under its tied name

}  // namespace

std::vector<Umt5WeightSpec> umt5_weight_specs(const Umt5Config& c, Umt5Weights& w) {
  const int64_t d = c.d_model, inner = c.inner(), f = c.d_ff;
  std::vector<Umt5WeightSpec> s;
  s.push_back({kEmbedding, {c.vocab, d}, true, &w.token_embedding});
  w.layers.resize(static_cast<size_t>(c.layers));
  for (int64_t i = 0; i < c.layers; ++i) {
    auto& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
    s.push_back({p + "0.layer_norm.weight", {d}, false, &l.norm1});
    s.push_back({p + "0.SelfAttention.q.weight", {inner, d}, true, &l.q});
    s.push_back({p + "0.SelfAttention.k.weight", {inner, d}, true, &l.k});
    s.push_back({p + "0.SelfAttention.v.weight", {inner, d}, true, &l.v});
    s.push_back({p + "0.SelfAttention.o.weight", {d, inner}, true, &l.o});
    s.push_back({p + "0.SelfAttention.relative_attention_bias.weight", {c.buckets, c.heads}, false, &l.position_bias});
    s.push_back({p + "1.layer_norm.weight", {d}, false, &l.norm2});
    s.push_back({p + "1.DenseReluDense.wi_0.weight", {f, d}, true, &l.wi_gate});
    s.push_back({p + "1.DenseReluDense.wi_1.weight", {f, d}, true, &l.wi_linear});
    s.push_back({p + "1.DenseReluDense.wo.weight", {d, f}, true, &l.wo});
  }
  s.push_back({"encoder.final_layer_norm.weight", {d}, false, &w.final_norm});
  return s;
}

namespace {

// The checkpoint tensor of every spec, checked: present with its shape, nothing else in the folder.
std::vector<const io::TensorInfo*> match_checkpoint(const io::SafetensorsSet& files, const Umt5Config& config,
                                                    const std::vector<Umt5WeightSpec>& specs) {
  const std::string where = files.dir().string();
  std::vector<const io::TensorInfo*> found;
  std::set<std::string> used;
  for (const Umt5WeightSpec& s : specs) {
    const io::TensorInfo* t = files.find(s.name);
    if (!t && s.name == kEmbedding) t = files.find(kTiedEmbedding);
    if (!t)
      throw std::runtime_error("missing tensor " + s.name + " in " + where + " (text encoder " + config.name + ")");
    if (t->shape != s.shape)
      throw std::runtime_error("tensor " + t->name + " in " + t->file + " has shape " + shape_string(t->shape) +
                               ", the text encoder needs " + shape_string(s.shape));
    used.insert(t->name);
    found.push_back(t);
  }
  // The tied copy of the embedding may sit beside shared.weight; it must match it.
  if (const io::TensorInfo* tied = files.find(kTiedEmbedding); tied && !used.count(kTiedEmbedding)) {
    if (tied->shape != specs.front().shape)
      throw std::runtime_error("tensor " + tied->name + " in " + tied->file + " has shape " +
                               shape_string(tied->shape) + ", the text encoder needs " +
                               shape_string(specs.front().shape));
    used.insert(kTiedEmbedding);
  }
  for (const std::string& name : files.names())
    if (!used.count(name))
      throw std::runtime_error("unexpected tensor " + name + " in " + files.find(name)->file +
                               " (not part of the umT5 encoder " + config.name + ")");
  return found;
}

DType dtype_for(const Backend& backend, const Umt5WeightSpec& s) {
  return s.compute_dtype ? backend.compute_dtype() : DType::f32;
}

}  // namespace

void check_umt5_checkpoint(const Umt5Config& config, const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir, "model");
  Umt5Weights unused;
  match_checkpoint(files, config, umt5_weight_specs(config, unused));
}

Umt5Weights load_umt5_weights(Backend& backend, const Umt5Config& config, const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir, "model");
  Umt5Weights weights;
  const auto specs = umt5_weight_specs(config, weights);
  const auto found = match_checkpoint(files, config, specs);
  std::vector<float> host;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Umt5WeightSpec& s = specs[i];
    host.resize(static_cast<size_t>(found[i]->numel()));
    io::copy_to_f32(*found[i], host.data());
    *s.target = backend.allocate(s.shape, dtype_for(backend, s));
    backend.upload(*s.target, host.data());
  }
  return weights;
}

Umt5Weights random_umt5_weights(Backend& backend, const Umt5Config& config, uint64_t seed) {
  Umt5Weights weights;
  for (const Umt5WeightSpec& s : umt5_weight_specs(config, weights)) {
    const bool is_norm = s.name.find("layer_norm") != std::string::npos;
    const bool is_bias_table = s.name.find("relative_attention_bias") != std::string::npos;
    const float std_dev = s.name == kEmbedding ? 1.f
                          : is_norm            ? 0.1f
                          : is_bias_table      ? 0.5f
                                               : 1.f / std::sqrt(static_cast<float>(s.shape[1]));
    *s.target = backend.allocate(s.shape, dtype_for(backend, s));
    backend.fill_normal(*s.target, seed, stream_id(s.name.c_str()), is_norm ? 1.f : 0.f, std_dev);
  }
  return weights;
}

}  // namespace ditrun::text

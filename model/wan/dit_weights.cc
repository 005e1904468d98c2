#include "model/wan/dit_weights.h"

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "io/safetensors.h"
#include "model/core/philox.h"

namespace ditrun::wan {

std::vector<WeightSpec> dit_weight_specs(const DitConfig& c, DitWeights& w) {
  const int64_t d = c.dim;
  std::vector<WeightSpec> s;
  auto linear = [&](const std::string& name, Linear& l, int64_t out, int64_t in, bool big, Shape stored = {}) {
    s.push_back({name + ".weight", stored.empty() ? Shape{out, in} : stored, big, &l.w});
    s.push_back({name + ".bias", {out}, big, &l.b});
  };
  linear("patch_embedding", w.patch, d, c.patch_features(), true,
         {d, c.in_dim, c.patch_t, c.patch_h, c.patch_w});
  linear("condition_embedder.text_embedder.linear_1", w.text1, d, c.text_dim, true);
  linear("condition_embedder.text_embedder.linear_2", w.text2, d, d, true);
  linear("condition_embedder.time_embedder.linear_1", w.time1, d, c.freq_dim, false);
  linear("condition_embedder.time_embedder.linear_2", w.time2, d, d, false);
  linear("condition_embedder.time_proj", w.time_proj, 6 * d, d, false);
  linear("proj_out", w.head, c.out_features(), d, false);
  s.push_back({"scale_shift_table", {1, 2, d}, false, &w.head_modulation});
  w.blocks.resize(c.layers);
  for (int i = 0; i < c.layers; ++i) {
    auto& b = w.blocks[i];
    const std::string p = "blocks." + std::to_string(i) + ".";
    s.push_back({p + "scale_shift_table", {1, 6, d}, false, &b.modulation});
    linear(p + "attn1.to_q", b.q, d, d, true);
    linear(p + "attn1.to_k", b.k, d, d, true);
    linear(p + "attn1.to_v", b.v, d, d, true);
    linear(p + "attn1.to_out.0", b.o, d, d, true);
    s.push_back({p + "attn1.norm_q.weight", {d}, false, &b.norm_q});
    s.push_back({p + "attn1.norm_k.weight", {d}, false, &b.norm_k});
    s.push_back({p + "norm2.weight", {d}, false, &b.cross_norm_w});
    s.push_back({p + "norm2.bias", {d}, false, &b.cross_norm_b});
    linear(p + "attn2.to_q", b.cross_q, d, d, true);
    linear(p + "attn2.to_k", b.cross_k, d, d, true);
    linear(p + "attn2.to_v", b.cross_v, d, d, true);
    linear(p + "attn2.to_out.0", b.cross_o, d, d, true);
    s.push_back({p + "attn2.norm_q.weight", {d}, false, &b.cross_norm_q});
    s.push_back({p + "attn2.norm_k.weight", {d}, false, &b.cross_norm_k});
    linear(p + "ffn.net.0.proj", b.ffn_in, c.ffn_dim, d, true);
    linear(p + "ffn.net.2", b.ffn_out, d, c.ffn_dim, true);
  }
  return s;
}

std::string diffusers_name(const std::string& name) {
  static const std::map<std::string, std::string> global = {
      {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
      {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
      {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
      {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
      {"time_projection.1", "condition_embedder.time_proj"},
      {"head.head", "proj_out"},
  };
  static const std::map<std::string, std::string> block = {
      {"self_attn.q", "attn1.to_q"},         {"self_attn.k", "attn1.to_k"},
      {"self_attn.v", "attn1.to_v"},         {"self_attn.o", "attn1.to_out.0"},
      {"self_attn.norm_q", "attn1.norm_q"},  {"self_attn.norm_k", "attn1.norm_k"},
      {"cross_attn.q", "attn2.to_q"},        {"cross_attn.k", "attn2.to_k"},
      {"cross_attn.v", "attn2.to_v"},        {"cross_attn.o", "attn2.to_out.0"},
      {"cross_attn.norm_q", "attn2.norm_q"}, {"cross_attn.norm_k", "attn2.norm_k"},
      {"norm3", "norm2"},                    {"ffn.0", "ffn.net.0.proj"},
      {"ffn.2", "ffn.net.2"},
  };
  if (name == "head.modulation") return "scale_shift_table";
  // Split "<module>.<weight|bias>".
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return name;
  const std::string module = name.substr(0, dot), leaf = name.substr(dot);
  if (auto it = global.find(module); it != global.end()) return it->second + leaf;
  if (name.rfind("blocks.", 0) == 0) {
    const auto second = name.find('.', 7);
    const std::string prefix = name.substr(0, second + 1), rest = name.substr(second + 1);
    if (rest == "modulation") return prefix + "scale_shift_table";
    const auto rest_dot = rest.rfind('.');
    if (rest_dot != std::string::npos)
      if (auto it = block.find(rest.substr(0, rest_dot)); it != block.end())
        return prefix + it->second + rest.substr(rest_dot);
  }
  return name;
}

namespace {

// The patch embedding is stored as a Conv3d weight [D, C, 1, 2, 2] (columns c·4 + kh·2 + kw); the model takes
// tokens in head order (columns (kh·2 + kw)·C + c, see Backend::patchify), so its columns are permuted once here.
void permute_patch_columns(std::vector<float>& w, int64_t rows, int64_t channels) {
  std::vector<float> row(static_cast<size_t>(channels * 4));
  for (int64_t r = 0; r < rows; ++r) {
    float* p = w.data() + r * channels * 4;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t k = 0; k < 4; ++k) row[k * channels + c] = p[c * 4 + k];
    std::copy(row.begin(), row.end(), p);
  }
}

// Host values of one weight as the device wants them (layout fixes applied).
bool has_device_layout(const WeightSpec& s) { return s.shape.size() == 5; }

void to_device_layout(const WeightSpec& s, std::vector<float>& host) {
  if (has_device_layout(s)) permute_patch_columns(host, s.shape[0], s.shape[1]);
}

// Stored shapes of the modulation tables drop their leading 1 and the patch conv its kernel dims on the device.
Shape device_shape(const WeightSpec& s) {
  if (s.shape.size() == 3 && s.shape[0] == 1) return {s.shape[1], s.shape[2]};
  if (s.shape.size() == 5) return {s.shape[0], s.shape[1] * s.shape[2] * s.shape[3] * s.shape[4]};
  return s.shape;
}

DType dtype_for(const Backend& backend, const WeightSpec& s) {
  return s.compute_dtype ? backend.compute_dtype() : DType::f32;
}

}  // namespace

namespace {

// The checkpoint's tensors by Diffusers name, checked against the model: every tensor present with its shape,
// nothing else. Original Wan names map onto the same set.
std::map<std::string, const io::TensorInfo*> match_checkpoint(const io::SafetensorsSet& files, const DitConfig& config,
                                                              const std::filesystem::path& dir,
                                                              std::vector<WeightSpec>& specs) {
  std::map<std::string, const io::TensorInfo*> by_name;
  for (const std::string& name : files.names()) {
    const std::string canonical = diffusers_name(name);
    if (!by_name.emplace(canonical, files.find(name)).second)
      throw std::runtime_error("tensor " + name + " appears twice (as " + canonical + ") in " + dir.string());
  }
  std::set<std::string> used;
  for (const WeightSpec& s : specs) {
    auto it = by_name.find(s.name);
    if (it == by_name.end())
      throw std::runtime_error("missing tensor " + s.name + " in " + dir.string() + " (model " + config.name + ")");
    const io::TensorInfo& t = *it->second;
    if (t.shape != s.shape)
      throw std::runtime_error("tensor " + t.name + " in " + t.file + " has shape " + shape_string(t.shape) +
                               ", the model needs " + shape_string(s.shape));
    used.insert(s.name);
  }
  for (const auto& [name, info] : by_name)
    if (!used.count(name))
      throw std::runtime_error("unexpected tensor " + info->name + " in " + info->file + " (not part of model " +
                               config.name + ")");
  return by_name;
}

}  // namespace

void check_dit_checkpoint(const DitConfig& config, const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir);
  DitWeights unused;
  auto specs = dit_weight_specs(config, unused);
  match_checkpoint(files, config, dir, specs);
}

DitWeights load_dit_weights(Backend& backend, const DitConfig& config, const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir);
  DitWeights weights;
  auto specs = dit_weight_specs(config, weights);
  const auto by_name = match_checkpoint(files, config, dir, specs);
  std::vector<float> host;
  for (const WeightSpec& s : specs) {
    const io::TensorInfo& t = *by_name.at(s.name);
    host.resize(static_cast<size_t>(t.numel()));
    io::copy_to_f32(t, host.data());
    to_device_layout(s, host);
    *s.target = backend.allocate(device_shape(s), dtype_for(backend, s));
    backend.upload(*s.target, host.data());
  }
  return weights;
}

DitWeights random_dit_weights(Backend& backend, const DitConfig& config, uint64_t seed) {
  DitWeights weights;
  std::vector<float> host;
  for (const WeightSpec& s : dit_weight_specs(config, weights)) {
    const int64_t n = shape_numel(s.shape);
    const uint64_t stream = stream_id(s.name.c_str());
    const bool is_bias = s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = s.name.find("norm") != std::string::npos;
    const bool is_table = s.name.find("scale_shift_table") != std::string::npos;
    // Fan-in scaling keeps activations O(1) through any depth; tables and norms stay near their neutral values.
    const float std_dev = is_table ? 0.1f : is_bias ? 0.02f : is_norm ? 0.1f
                                                     : 1.f / std::sqrt(static_cast<float>(n / s.shape[0]));
    const float mean = (is_norm && !is_bias) ? 1.f : 0.f;
    *s.target = backend.allocate(device_shape(s), dtype_for(backend, s));
    if (!has_device_layout(s)) {  // made in place: 14B of weights in a second on a GPU, not a minute on the host
      backend.fill_normal(*s.target, seed, stream, mean, std_dev);
      continue;
    }
    host.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) host[i] = mean + std_dev * philox_normal(seed, stream, static_cast<uint64_t>(i));
    to_device_layout(s, host);
    backend.upload(*s.target, host.data());
  }
  return weights;
}

}  // namespace ditrun::wan

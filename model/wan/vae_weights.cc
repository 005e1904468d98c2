#include "model/wan/vae_weights.h"

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "io/safetensors.h"
#include "model/core/philox.h"

namespace ditrun::wan {

std::vector<VaeWeightSpec> vae_decoder_weight_specs(const VaeConfig& c, VaeDecoderWeights& w) {
  validate_vae_config(c);
  std::vector<VaeWeightSpec> s;
  auto bias = [&](const std::string& name, VaeConv& conv, int64_t co) {
    s.push_back({name + ".bias", {co}, VaeLayout::as_is, &conv.b});
  };
  auto conv3d = [&](const std::string& name, VaeConv& conv, int64_t co, int64_t ci, int64_t kt, int64_t kh,
                    int64_t kw) {
    s.push_back({name + ".weight", {co, ci, kt, kh, kw}, VaeLayout::conv3d, &conv.w});
    bias(name, conv, co);
  };
  auto conv2d = [&](const std::string& name, VaeConv& conv, int64_t co, int64_t ci) {
    s.push_back({name + ".weight", {co, ci, 3, 3}, VaeLayout::conv2d, &conv.w});
    bias(name, conv, co);
  };
  auto pointwise = [&](const std::string& name, VaeConv& conv, int64_t co, int64_t ci, bool is_3d) {
    s.push_back({name + ".weight", is_3d ? Shape{co, ci, 1, 1, 1} : Shape{co, ci, 1, 1}, VaeLayout::pointwise,
                 &conv.w});
    bias(name, conv, co);
  };
  auto gamma = [&](const std::string& name, Tensor& t, int64_t ch, bool is_3d) {
    s.push_back({name, is_3d ? Shape{ch, 1, 1, 1} : Shape{ch, 1, 1}, VaeLayout::gamma, &t});
  };
  // ResidualBlock (spec §4.2; Diffusers names norm1, conv1, norm2, conv2, conv_shortcut).
  auto residual = [&](const std::string& p, VaeResidualBlock& r, int64_t in, int64_t out) {
    gamma(p + "norm1.gamma", r.norm1, in, true);
    conv3d(p + "conv1", r.conv1, out, in, 3, 3, 3);
    gamma(p + "norm2.gamma", r.norm2, out, true);
    conv3d(p + "conv2", r.conv2, out, out, 3, 3, 3);
    r.has_shortcut = in != out;
    if (r.has_shortcut) pointwise(p + "conv_shortcut", r.shortcut, out, in, true);
  };

  const int64_t z = c.z_dim;
  const std::vector<int> dims = c.decoder_dims();
  const int blocks = c.up_blocks();
  w.up_blocks.assign(static_cast<size_t>(blocks), {});  // sized before any pointer into it is taken
  for (auto& b : w.up_blocks) b.resnets.resize(static_cast<size_t>(c.num_res_blocks + 1));

  pointwise("post_quant_conv", w.post_quant, z, z, true);
  conv3d("decoder.conv_in", w.conv_in, dims[0], z, 3, 3, 3);
  residual("decoder.mid_block.resnets.0.", w.mid_first, dims[0], dims[0]);
  const std::string attn = "decoder.mid_block.attentions.0.";
  gamma(attn + "norm.gamma", w.mid_attention.norm, dims[0], false);
  pointwise(attn + "to_qkv", w.mid_attention.qkv, 3 * dims[0], dims[0], false);
  pointwise(attn + "proj", w.mid_attention.proj, dims[0], dims[0], false);
  residual("decoder.mid_block.resnets.1.", w.mid_second, dims[0], dims[0]);
  for (int i = 0; i < blocks; ++i) {
    VaeUpBlock& b = w.up_blocks[i];
    const std::string p = "decoder.up_blocks." + std::to_string(i) + ".";
    // Wan2.1: every block after the first starts at half the width (its predecessor's upsampler halves it).
    const int64_t out = dims[i + 1];
    int64_t in = i == 0 ? dims[0] : dims[i] / 2;
    for (int r = 0; r <= c.num_res_blocks; ++r, in = out)
      residual(p + "resnets." + std::to_string(r) + ".", b.resnets[r], in, out);
    b.has_upsampler = i + 1 < blocks;
    if (!b.has_upsampler) continue;
    b.upsampler.temporal = c.temporal_upsample[i];
    if (b.upsampler.temporal) conv3d(p + "upsamplers.0.time_conv", b.upsampler.time_conv, 2 * out, out, 3, 1, 1);
    conv2d(p + "upsamplers.0.resample.1", b.upsampler.spatial, out / 2, out);
  }
  gamma("decoder.norm_out.gamma", w.norm_out, dims.back(), true);
  conv3d("decoder.conv_out", w.conv_out, c.out_channels, dims.back(), 3, 3, 3);
  return s;
}

int64_t vae_decoder_parameter_count(const VaeConfig& config) {
  VaeDecoderWeights unused;
  int64_t n = 0;
  for (const auto& s : vae_decoder_weight_specs(config, unused)) n += shape_numel(s.shape);
  return n;
}

namespace {

Shape device_shape(const VaeWeightSpec& s) {
  switch (s.layout) {
    case VaeLayout::as_is: return s.shape;
    case VaeLayout::gamma: return {s.shape[0]};
    case VaeLayout::pointwise: return {s.shape[0], s.shape[1]};
    case VaeLayout::conv3d: return {s.shape[0], s.shape[2], s.shape[3], s.shape[4], s.shape[1]};
    case VaeLayout::conv2d: return {s.shape[0], 1, s.shape[2], s.shape[3], s.shape[1]};
  }
  return s.shape;
}

// PyTorch [Co, Ci, taps...] -> channels-last [Co, taps..., Ci].
void to_device_layout(const VaeWeightSpec& s, std::vector<float>& host) {
  if (s.layout != VaeLayout::conv3d && s.layout != VaeLayout::conv2d) return;
  const int64_t co = s.shape[0], ci = s.shape[1], taps = shape_numel(s.shape) / (co * ci);
  std::vector<float> permuted(host.size());
  for (int64_t o = 0; o < co; ++o)
    for (int64_t i = 0; i < ci; ++i)
      for (int64_t t = 0; t < taps; ++t) permuted[(o * taps + t) * ci + i] = host[(o * ci + i) * taps + t];
  host.swap(permuted);
}

bool is_encoder_tensor(const std::string& name) {
  return name.rfind("encoder.", 0) == 0 || name.rfind("quant_conv.", 0) == 0;
}

// The checkpoint's decoder tensors by name, checked against the model: every tensor present with its shape; the
// encoder's tensors ignored; nothing else.
std::map<std::string, const io::TensorInfo*> match_checkpoint(const io::SafetensorsSet& files, const VaeConfig& config,
                                                              const std::filesystem::path& dir,
                                                              const std::vector<VaeWeightSpec>& specs) {
  std::map<std::string, const io::TensorInfo*> by_name;
  std::set<std::string> used;
  for (const VaeWeightSpec& s : specs) {
    const io::TensorInfo* t = files.find(s.name);
    if (!t)
      throw std::runtime_error("missing tensor " + s.name + " in " + dir.string() + " (VAE " + config.name + ")");
    if (t->shape != s.shape)
      throw std::runtime_error("tensor " + t->name + " in " + t->file + " has shape " + shape_string(t->shape) +
                               ", the VAE needs " + shape_string(s.shape));
    by_name[s.name] = t;
  }
  for (const std::string& name : files.names())
    if (!by_name.count(name) && !is_encoder_tensor(name))
      throw std::runtime_error("unexpected tensor " + name + " in " + files.find(name)->file +
                               " (not part of VAE " + config.name + ")");
  return by_name;
}

}  // namespace

void check_vae_checkpoint(const VaeConfig& config, const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir);
  VaeDecoderWeights unused;
  match_checkpoint(files, config, dir, vae_decoder_weight_specs(config, unused));
}

VaeDecoderWeights load_vae_decoder_weights(Backend& backend, const VaeConfig& config,
                                           const std::filesystem::path& dir) {
  const io::SafetensorsSet files = io::SafetensorsSet::open_folder(dir);
  VaeDecoderWeights weights;
  const auto specs = vae_decoder_weight_specs(config, weights);
  const auto by_name = match_checkpoint(files, config, dir, specs);
  std::vector<float> host;
  for (const VaeWeightSpec& s : specs) {
    const io::TensorInfo& t = *by_name.at(s.name);
    host.resize(static_cast<size_t>(t.numel()));
    io::copy_to_f32(t, host.data());
    to_device_layout(s, host);
    *s.target = backend.allocate(device_shape(s), DType::f32);
    backend.upload(*s.target, host.data());
  }
  return weights;
}

VaeDecoderWeights random_vae_decoder_weights(Backend& backend, const VaeConfig& config, uint64_t seed) {
  VaeDecoderWeights weights;
  for (const VaeWeightSpec& s : vae_decoder_weight_specs(config, weights)) {
    const int64_t n = shape_numel(s.shape);
    float mean = 0.f, std_dev = 0.f;
    if (s.layout == VaeLayout::gamma) {
      mean = 1.f;
      std_dev = 0.1f;
    } else if (s.layout == VaeLayout::as_is) {
      std_dev = 0.1f;
    } else {
      // Fan-in scaling keeps activations O(1); the output conv is quieter so the clamp to [−1, 1] rarely bites
      // (the rules of tests/golden/make_vae_golden.py).
      std_dev = 1.f / std::sqrt(static_cast<float>(n / s.shape[0]));
      if (s.name == "decoder.conv_out.weight") std_dev *= 0.75f;
    }
    // Random values need no permutation: any layout of i.i.d. draws is as good as another.
    *s.target = backend.allocate(device_shape(s), DType::f32);
    backend.fill_normal(*s.target, seed, stream_id(s.name.c_str()), mean, std_dev);
  }
  return weights;
}

}  // namespace ditrun::wan

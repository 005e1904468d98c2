// Pieces of the model checked against facts of the spec and known answers (no goldens needed).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <unistd.h>
#include <fstream>

#include "io/safetensors.h"

#include "model/core/philox.h"
#include "model/cpu/cpu_backend.h"
#include "model/sampling/noise.h"
#include "model/sampling/schedule.h"
#include "model/wan/dit_config.h"
#include "model/wan/dit_source.h"
#include "model/wan/dit_weights.h"
#include "model/wan/positional.h"

using namespace ditrun;

TEST(DitConfig, ParameterCountsMatchTheReleasedModels) {
  // spec §1.1, derived from the checkpoints.
  EXPECT_EQ(wan::dit_config_1_3b().parameter_count(), 1418996800LL);
  EXPECT_EQ(wan::dit_config_14b().parameter_count(), 14288491584LL);
  wan::DitWeights w;
  long long counted = 0;
  for (const auto& s : wan::dit_weight_specs(wan::dit_config_1_3b(), w)) counted += shape_numel(s.shape);
  EXPECT_EQ(counted, 1418996800LL);
  EXPECT_EQ(wan::dit_weight_specs(wan::dit_config_14b(), w).size(), 27u * 40 + 15);  // spec §3.2 tensor count
}

TEST(DitWeights, OriginalWanNamesMapToDiffusers) {
  EXPECT_EQ(wan::diffusers_name("time_embedding.0.weight"), "condition_embedder.time_embedder.linear_1.weight");
  EXPECT_EQ(wan::diffusers_name("text_embedding.2.bias"), "condition_embedder.text_embedder.linear_2.bias");
  EXPECT_EQ(wan::diffusers_name("time_projection.1.weight"), "condition_embedder.time_proj.weight");
  EXPECT_EQ(wan::diffusers_name("head.modulation"), "scale_shift_table");
  EXPECT_EQ(wan::diffusers_name("head.head.weight"), "proj_out.weight");
  EXPECT_EQ(wan::diffusers_name("blocks.7.modulation"), "blocks.7.scale_shift_table");
  EXPECT_EQ(wan::diffusers_name("blocks.12.self_attn.o.weight"), "blocks.12.attn1.to_out.0.weight");
  EXPECT_EQ(wan::diffusers_name("blocks.0.self_attn.norm_k.weight"), "blocks.0.attn1.norm_k.weight");
  EXPECT_EQ(wan::diffusers_name("blocks.3.cross_attn.q.bias"), "blocks.3.attn2.to_q.bias");
  EXPECT_EQ(wan::diffusers_name("blocks.3.norm3.weight"), "blocks.3.norm2.weight");  // the cross-attn LayerNorm
  EXPECT_EQ(wan::diffusers_name("blocks.3.ffn.0.weight"), "blocks.3.ffn.net.0.proj.weight");
  EXPECT_EQ(wan::diffusers_name("blocks.3.ffn.2.bias"), "blocks.3.ffn.net.2.bias");
  EXPECT_EQ(wan::diffusers_name("patch_embedding.weight"), "patch_embedding.weight");
  EXPECT_EQ(wan::diffusers_name("blocks.3.attn2.to_q.bias"), "blocks.3.attn2.to_q.bias");  // already Diffusers
}

TEST(Schedule, WanGridMatchesTheReferenceTimesteps) {
  // spec §6.2: N=50, s=5 and N=40, s=3.
  const auto s50 = sampling::flow_schedule(50, 5.0, sampling::SigmaGrid::wan);
  const std::vector<double> head = {999, 995, 991, 987, 982, 978};
  const std::vector<double> tail = {302, 241, 172, 92};
  for (size_t i = 0; i < head.size(); ++i) EXPECT_EQ(s50.timesteps[i], head[i]) << i;
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_EQ(s50.timesteps[46 + i], tail[i]) << i;
  EXPECT_NEAR(s50.sigmas[0], 0.99980, 5e-6);
  EXPECT_NEAR(s50.sigmas[49], 0.09251, 5e-6);
  EXPECT_EQ(s50.sigmas.back(), 0.0);
  ASSERT_EQ(s50.sigmas.size(), 51u);
  const auto s40 = sampling::flow_schedule(40, 3.0, sampling::SigmaGrid::wan);
  const std::vector<double> head40 = {999, 991, 982, 973}, tail40 = {195, 136, 71};
  for (size_t i = 0; i < head40.size(); ++i) EXPECT_EQ(s40.timesteps[i], head40[i]) << i;
  for (size_t i = 0; i < tail40.size(); ++i) EXPECT_EQ(s40.timesteps[37 + i], tail40[i]) << i;
}

TEST(Philox, KnownAnswersOfTheReference) {
  // Random123 known-answer vectors for philox4x32-10.
  uint32_t out[4];
  Philox4x32::generate(out, 0, 0, 0);
  EXPECT_EQ(out[0], 0x6627e8d5u);
  EXPECT_EQ(out[1], 0xe169c58du);
  EXPECT_EQ(out[2], 0xbc57ac4cu);
  EXPECT_EQ(out[3], 0x9b00dbd8u);
  Philox4x32::generate(out, ~0ull, ~0ull, ~0ull);
  EXPECT_EQ(out[0], 0x408f276du);
  EXPECT_EQ(out[1], 0x41c83b0eu);
  EXPECT_EQ(out[2], 0xa20bc7c6u);
  EXPECT_EQ(out[3], 0x6d5451fdu);
}

TEST(Philox, CpuFillNormalIsThePhiloxSequence) {
  CpuBackend be;
  Tensor t = be.allocate({70001}, DType::f32);  // past the OpenMP threshold
  be.fill_normal(t, 11, 5, -1.f, 0.25f);
  const float* v = t.ptr<float>();
  for (uint64_t i : {0ull, 1ull, 65536ull, 70000ull}) EXPECT_EQ(v[i], -1.f + 0.25f * philox_normal(11, 5, i)) << i;
  double mean = 0;
  for (int64_t i = 0; i < t.numel(); ++i) mean += v[i];
  EXPECT_NEAR(mean / t.numel(), -1.0, 0.01);
}

TEST(Noise, StandardNormalAndShardable) {
  const auto all = sampling::latent_noise(42, 0, 200000);
  double mean = 0, var = 0;
  for (float v : all) mean += v;
  mean /= all.size();
  for (float v : all) var += (v - mean) * (v - mean);
  var /= all.size();
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.02);
  const auto shard = sampling::latent_noise(42, 12345, 100);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(shard[i], all[12345 + i]);
  EXPECT_NE(sampling::latent_noise(43, 0, 1)[0], all[0]);
}

TEST(Positional, SinusoidAndRopeAngles) {
  const auto s0 = wan::timestep_sinusoid(0.0, 256);
  for (int j = 0; j < 128; ++j) {
    EXPECT_EQ(s0[j], 1.f);
    EXPECT_EQ(s0[128 + j], 0.f);
  }
  const auto s = wan::timestep_sinusoid(999.0, 256);
  EXPECT_FLOAT_EQ(s[0], static_cast<float>(std::cos(999.0)));
  EXPECT_FLOAT_EQ(s[128 + 5], static_cast<float>(std::sin(999.0 * std::pow(10000.0, -5.0 / 128))));
  // d = 128: 22 pairs on f, 21 on h, 21 on w. Token (f=2, h=1, w=3) of a 3×4×5 grid is l = (2·4+1)·5+3 = 48.
  const auto t = wan::rope_table(128, 3, 4, 5, 40, 21);  // tokens 40..60: 60 is padding
  const int i = 48 - 40;
  EXPECT_FLOAT_EQ(t.cos[i * 64 + 0], static_cast<float>(std::cos(2.0)));
  EXPECT_FLOAT_EQ(t.cos[i * 64 + 1], static_cast<float>(std::cos(2.0 * std::pow(10000.0, -2.0 / 44))));
  EXPECT_FLOAT_EQ(t.sin[i * 64 + 22], static_cast<float>(std::sin(1.0)));
  EXPECT_FLOAT_EQ(t.sin[i * 64 + 43], static_cast<float>(std::sin(3.0)));
  EXPECT_FLOAT_EQ(t.cos[i * 64 + 63], static_cast<float>(std::cos(3.0 * std::pow(10000.0, -40.0 / 42))));
  for (int k = 0; k < 64; ++k) {  // padding token: identity
    EXPECT_EQ(t.cos[20 * 64 + k], 1.f);
    EXPECT_EQ(t.sin[20 * 64 + k], 0.f);
  }
}

TEST(CpuBackend, AttentionLogSumExpAndMaskedKeys) {
  CpuBackend be;
  const int64_t lq = 5, lk = 9, h = 2, d = 4;
  std::vector<float> qh(lq * h * d), kh(lk * h * d), vh(lk * h * d);
  for (size_t i = 0; i < qh.size(); ++i) qh[i] = philox_normal(1, 1, i);
  for (size_t i = 0; i < kh.size(); ++i) kh[i] = philox_normal(1, 2, i);
  for (size_t i = 0; i < vh.size(); ++i) vh[i] = philox_normal(1, 3, i);
  Tensor q = be.allocate({lq, h, d}, DType::f32), k = be.allocate({lk, h, d}, DType::f32);
  Tensor v = be.allocate({lk, h, d}, DType::f32), o = be.allocate({lq, h, d}, DType::f32);
  Tensor lse = be.allocate({h, lq}, DType::f32);
  be.upload(q, qh.data());
  be.upload(k, kh.data());
  be.upload(v, vh.data());
  be.attention(o, &lse, q, k, v, 7, 0.5f);
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < lq; ++i) {
      double sum = 0, out[4] = {};
      for (int64_t j = 0; j < 7; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += qh[(i * h + hh) * d + t] * kh[(j * h + hh) * d + t];
        const double p = std::exp(0.5 * s);
        sum += p;
        for (int64_t t = 0; t < d; ++t) out[t] += p * vh[(j * h + hh) * d + t];
      }
      EXPECT_NEAR(lse.ptr<float>()[hh * lq + i], std::log(sum), 1e-5);
      for (int64_t t = 0; t < d; ++t) EXPECT_NEAR(o.ptr<float>()[(i * h + hh) * d + t], out[t] / sum, 1e-5);
    }
}

// The q/k step of spec §1.5-1.6: RMSNorm over all heads of a token, then each head's interleaved pairs rotated by
// the token's angles; tokens past the table (padding) are only normalised. The op is rms_norm then rope, bit for
// bit (the CUDA fused kernel is tested against it), and both match the formula computed here in double.
TEST(CpuBackend, RmsNormRopeIsRmsNormThenRope) {
  CpuBackend be;
  const int64_t l = 7, h = 3, d = 10, pairs = d / 2, table_rows = 5, width = h * d;
  const float eps = 1e-6f;
  std::vector<float> xh(l * width), wh(width), ch(table_rows * pairs), sh(table_rows * pairs);
  for (size_t i = 0; i < xh.size(); ++i) xh[i] = philox_normal(2, 1, i);
  for (size_t i = 0; i < wh.size(); ++i) wh[i] = 1.f + 0.25f * philox_normal(2, 2, i);
  for (size_t i = 0; i < ch.size(); ++i) {
    const double angle = 3.0 * philox_normal(2, 3, i);
    ch[i] = static_cast<float>(std::cos(angle));
    sh[i] = static_cast<float>(std::sin(angle));
  }
  Tensor fused = be.allocate({l, h, d}, DType::f32), composed = be.allocate({l, h, d}, DType::f32);
  Tensor w = be.allocate({width}, DType::f32), c = be.allocate({table_rows, pairs}, DType::f32);
  Tensor s = be.allocate({table_rows, pairs}, DType::f32);
  be.upload(fused, xh.data());
  be.upload(composed, xh.data());
  be.upload(w, wh.data());
  be.upload(c, ch.data());
  be.upload(s, sh.data());
  be.rms_norm_rope(fused, w, eps, c, s);
  Tensor composed_rows = composed.view({l, width});
  be.rms_norm(composed_rows, composed_rows, w, eps);
  be.rope(composed, c, s);
  EXPECT_EQ(std::memcmp(fused.data(), composed.data(), fused.bytes()), 0);

  for (int64_t t = 0; t < l; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < width; ++i) ss += double{xh[t * width + i]} * xh[t * width + i];
    const double inv = 1.0 / std::sqrt(ss / width + eps);
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t k = 0; k < pairs; ++k) {
        const int64_t i0 = hh * d + 2 * k;
        const double x0 = xh[t * width + i0] * inv * wh[i0], x1 = xh[t * width + i0 + 1] * inv * wh[i0 + 1];
        const bool rotated = t < table_rows;
        const double co = rotated ? ch[t * pairs + k] : 1.0, si = rotated ? sh[t * pairs + k] : 0.0;
        EXPECT_NEAR(fused.ptr<float>()[t * width + i0], x0 * co - x1 * si, 1e-5) << t << " " << hh << " " << k;
        EXPECT_NEAR(fused.ptr<float>()[t * width + i0 + 1], x0 * si + x1 * co, 1e-5) << t << " " << hh << " " << k;
      }
  }
}

// The residual step and its norm (DiT::finish_block): gate or none, then the affine or the modulated norm of the
// updated stream, checked against the formula in double; the argument combinations that make no sense throw.
TEST(CpuBackend, AddLayerNormIsTheResidualStepThenTheNorm) {
  CpuBackend be;
  const int64_t rows = 3, d = 10;
  const float eps = 1e-6f;
  std::vector<float> xh(rows * d), yh(rows * d), gh(d), wh(d), bh(d);
  for (size_t i = 0; i < xh.size(); ++i) {
    xh[i] = 2.f + philox_normal(4, 1, i);
    yh[i] = philox_normal(4, 2, i);
  }
  for (int64_t i = 0; i < d; ++i) {
    gh[i] = philox_normal(4, 3, i);
    wh[i] = 1.f + 0.25f * philox_normal(4, 4, i);
    bh[i] = 0.5f * philox_normal(4, 5, i);
  }
  auto make = [&](const std::vector<float>& v, const Shape& shape) {
    Tensor t = be.allocate(shape, DType::f32);
    be.upload(t, v.data());
    return t;
  };
  const Tensor y = make(yh, {rows, d}), g = make(gh, {d}), w = make(wh, {d}), b = make(bh, {d});
  for (const bool gated : {false, true})
    for (const bool modulate : {false, true}) {
      Tensor x = make(xh, {rows, d}), out = be.allocate({rows, d}, DType::f32);
      // Modulated: shift b, scale w; affine: weight w, bias b.
      be.add_layer_norm(x, y, gated ? &g : nullptr, out, modulate ? nullptr : &w, modulate ? nullptr : &b,
                        modulate ? &b : nullptr, modulate ? &w : nullptr, eps);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<double> sum(d);
        double mean = 0, var = 0;
        for (int64_t i = 0; i < d; ++i) {
          sum[i] = double{xh[r * d + i]} + double{yh[r * d + i]} * (gated ? gh[i] : 1.0);
          mean += sum[i] / d;
        }
        for (int64_t i = 0; i < d; ++i) var += (sum[i] - mean) * (sum[i] - mean) / d;
        for (int64_t i = 0; i < d; ++i) {
          const double n = (sum[i] - mean) / std::sqrt(var + eps);
          const double want = modulate ? n * (1.0 + wh[i]) + bh[i] : n * wh[i] + bh[i];
          EXPECT_NEAR(x.ptr<float>()[r * d + i], sum[i], 1e-5) << gated << modulate << " " << r << " " << i;
          EXPECT_NEAR(out.ptr<float>()[r * d + i], want, 1e-4) << gated << modulate << " " << r << " " << i;
        }
      }
    }
  Tensor x = make(xh, {rows, d}), out = be.allocate({rows, d}, DType::f32);
  EXPECT_THROW(be.add_layer_norm(x, y, nullptr, out, &w, nullptr, &b, &w, eps), std::invalid_argument);
  EXPECT_THROW(be.add_layer_norm(x, y, nullptr, out, nullptr, nullptr, &b, nullptr, eps), std::invalid_argument);
}

TEST(CpuBackend, PatchifyIsTheConvolutionLayoutAndUnpatchifyTheHeadLayout) {
  CpuBackend be;
  const int64_t c = 16, f = 2, hh = 4, ww = 6;
  std::vector<float> x(c * f * hh * ww);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  Tensor lat = be.allocate({c, f, hh, ww}, DType::f32), tok = be.allocate({f * 2 * 3, c * 4}, DType::f32);
  be.upload(lat, x.data());
  be.patchify(tok, lat);
  // Token (f=1, h=1, w=2) = l = (1·2+1)·3+2 = 11; feature (c=5, kh=1, kw=0) = (1·2+0)·16+5 = 37 → x[5,1,3,4].
  EXPECT_EQ(tok.ptr<float>()[11 * 64 + 37], x[((5 * f + 1) * hh + 3) * ww + 4]);
  Tensor round_trip = be.allocate({c, f, hh, ww}, DType::f32);
  be.unpatchify(round_trip, tok);
  EXPECT_EQ(std::vector<float>(round_trip.ptr<float>(), round_trip.ptr<float>() + x.size()), x);
  // Head column ((q·2)+r)·16 + c; feed a token table that names its latent element and check unpatchify.
  Tensor head = be.allocate({f * 2 * 3, 64}, DType::f32);
  for (int64_t l = 0; l < f * 6; ++l)
    for (int64_t col = 0; col < 64; ++col) head.ptr<float>()[l * 64 + col] = static_cast<float>(l * 1000 + col);
  Tensor back = be.allocate({c, f, hh, ww}, DType::f32);
  be.unpatchify(back, head);
  // latent[c=5, f=1, h=3 (a=1, q=1), w=4 (b=2, r=0)] = token 11, column (1·2+0)·16+5 = 37.
  EXPECT_EQ(back.ptr<float>()[((5 * f + 1) * hh + 3) * ww + 4], 11000.f + 37.f);
}

TEST(DiT, TheArenaIsSizedByTheFirstForwardAndThenReused) {
  CpuBackend be;
  wan::DiT dit = wan::make_dit(be, wan::resolve_dit_source("tiny"));
  const Shape shape = {16, 2, 6, 8};
  Tensor x = be.allocate(shape, DType::f32), v = be.allocate(shape, DType::f32);
  const auto noise = sampling::latent_noise(5, 0, static_cast<uint64_t>(shape_numel(shape)));
  be.upload(x, noise.data());
  std::vector<float> context(7 * 64, 0.25f);
  const auto cache = dit.encode_context(context, 7);
  dit.forward(v, x, 900, cache);
  const size_t growths = be.arena().growth_count(), capacity = be.arena().capacity();
  std::vector<float> first(noise.size()), second(noise.size());
  be.download(v, first.data());
  for (int step = 0; step < 3; ++step) dit.forward(v, x, 900, cache);
  be.download(v, second.data());
  EXPECT_EQ(be.arena().growth_count(), growths);
  EXPECT_EQ(be.arena().capacity(), capacity);
  EXPECT_EQ(first, second);  // deterministic, and nothing left over from the previous step
}

namespace {

// A Diffusers-layout checkpoint of the tiny config in `dir`, with `edit` applied to the tensor list first.
void write_tiny_checkpoint(const std::filesystem::path& dir,
                           const std::function<void(std::vector<io::TensorToWrite>&)>& edit) {
  std::filesystem::create_directories(dir / "transformer");
  std::ofstream(dir / "transformer" / "config.json")
      << R"({"_class_name": "WanTransformer3DModel", "num_attention_heads": 4, "attention_head_dim": 32,
             "ffn_dim": 256, "num_layers": 3, "in_channels": 16, "out_channels": 16, "text_dim": 64,
             "freq_dim": 256, "patch_size": [1, 2, 2], "eps": 1e-6})";
  wan::DitWeights unused;
  static std::vector<std::vector<float>> storage;
  storage.clear();
  std::vector<io::TensorToWrite> tensors;
  for (const auto& s : wan::dit_weight_specs(wan::dit_config_tiny(), unused)) {
    storage.emplace_back(static_cast<size_t>(shape_numel(s.shape)), 0.01f);
    tensors.push_back({s.name, DType::f32, s.shape, storage.back().data()});
  }
  edit(tensors);
  io::write_safetensors(dir / "transformer" / "diffusion_pytorch_model.safetensors", tensors);
}

std::string load_error(const std::filesystem::path& dir) {
  try {
    wan::resolve_dit_source(dir.string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(DitWeights, MissingExtraAndMisshapedTensorsAreNamed) {
  const auto root = std::filesystem::temp_directory_path() / ("ditrun_weights_" + std::to_string(::getpid()));
  write_tiny_checkpoint(root / "good", [](auto&) {});
  EXPECT_EQ(load_error(root / "good"), "no error");
  CpuBackend be;
  EXPECT_NO_THROW(wan::make_dit(be, wan::resolve_dit_source((root / "good").string())));

  write_tiny_checkpoint(root / "missing", [](auto& t) {
    t.erase(std::find_if(t.begin(), t.end(), [](auto& x) { return x.name == "blocks.1.attn1.to_k.weight"; }));
  });
  EXPECT_NE(load_error(root / "missing").find("missing tensor blocks.1.attn1.to_k.weight"), std::string::npos)
      << load_error(root / "missing");

  static float extra_value = 1.f;
  write_tiny_checkpoint(root / "extra", [](auto& t) { t.push_back({"blocks.9.extra.weight", DType::f32, {1}, &extra_value}); });
  EXPECT_NE(load_error(root / "extra").find("unexpected tensor blocks.9.extra.weight"), std::string::npos)
      << load_error(root / "extra");

  write_tiny_checkpoint(root / "shape", [](auto& t) {
    for (auto& x : t)
      if (x.name == "proj_out.weight") x.shape = {32, 128};  // half the rows: the data is still big enough
  });
  EXPECT_NE(load_error(root / "shape").find("tensor proj_out.weight"), std::string::npos) << load_error(root / "shape");
  EXPECT_NE(load_error(root / "shape").find("has shape [32, 128], the model needs [64, 128]"), std::string::npos);
  std::filesystem::remove_all(root);
}

TEST(CpuBackend, AttentionMergeOfKeyChunksIsTheWholeAttention) {
  CpuBackend be;
  const int64_t lq = 6, lk = 11, split = 4, h = 2, d = 8;
  auto fill = [&](Tensor& t, uint64_t stream) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = philox_normal(3, stream, i);
    be.upload(t, v.data());
  };
  Tensor q = be.allocate({lq, h, d}, DType::f32), k = be.allocate({lk, h, d}, DType::f32);
  Tensor v = be.allocate({lk, h, d}, DType::f32);
  fill(q, 1);
  fill(k, 2);
  fill(v, 3);
  Tensor whole = be.allocate({lq, h, d}, DType::f32), whole_lse = be.allocate({h, lq}, DType::f32);
  be.attention(whole, &whole_lse, q, k, v, lk, 0.3f);
  Tensor acc = be.allocate({lq, h, d}, DType::f32), lse = be.allocate({h, lq}, DType::f32);
  Tensor part = be.allocate({lq, h, d}, DType::f32), part_lse = be.allocate({h, lq}, DType::f32);
  be.attention(acc, &lse, q, k.slice(0, split), v.slice(0, split), split, 0.3f);
  be.attention(part, &part_lse, q, k.slice(split, lk), v.slice(split, lk), lk - split, 0.3f);
  be.attention_merge(acc, lse, part, part_lse);
  be.attention(part, &part_lse, q, k, v, 0, 0.3f);  // no valid key: lse −∞, no change
  be.attention_merge(acc, lse, part, part_lse);
  for (int64_t i = 0; i < whole.numel(); ++i) EXPECT_NEAR(acc.ptr<float>()[i], whole.ptr<float>()[i], 1e-5);
  for (int64_t i = 0; i < lse.numel(); ++i) EXPECT_NEAR(lse.ptr<float>()[i], whole_lse.ptr<float>()[i], 1e-5);
}

// A full-size DiT forward on the GPU checked against the CPU reference on a slice (issue: "a 1.3B-shaped forward
// at 480p matches the CPU result within 2e-2 on a slice"). The CPU cannot afford the whole forward (283 TFLOP),
// so it recomputes, from the GPU's own input to each checked block, that block's output for a slice of tokens
// (keys and values from all tokens), and the head for every token. Any block error therefore shows.
//   dit_slice_check --config 1.3b --width 832 --height 480 --frames 81 --blocks 0,15,29 --rows 256
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "model/core/philox.h"
#include "model/cpu/cpu_backend.h"
#include "model/wan/dit_source.h"
#include "model/wan/positional.h"
#include "tests/relative_l2.h"

using namespace ditrun;
using ditrun::testing::relative_l2;


int main(int argc, char** argv) {
  CLI::App app{"GPU DiT forward vs CPU reference on a slice"};
  std::string config = "1.3b", blocks_arg = "0,15,29";
  int width = 832, height = 480, frames = 81, slice_rows = 256;
  double tolerance = 2e-2;
  app.add_option("--config", config)->capture_default_str();
  app.add_option("--width", width)->capture_default_str();
  app.add_option("--height", height)->capture_default_str();
  app.add_option("--frames", frames)->capture_default_str();
  app.add_option("--blocks", blocks_arg, "Blocks to check")->capture_default_str();
  app.add_option("--rows", slice_rows, "Tokens in the checked slice")->capture_default_str();
  app.add_option("--tolerance", tolerance)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::map<int, bool> check;
  {
    std::stringstream ss(blocks_arg);
    for (std::string b; std::getline(ss, b, ',');) check[std::stoi(b)] = true;
  }

  const auto source = wan::resolve_dit_source("random:" + config + ":3");
  const auto& c = source.config;
  const Shape shape = {16, 1 + (frames - 1) / 4, height / 8, width / 8};
  const int64_t gf = shape[1], gh = shape[2] / 2, gw = shape[3] / 2, tokens = gf * gh * gw;
  const int64_t first = tokens / 2 - slice_rows / 2;  // a slice from the middle of the video
  std::vector<float> x_host(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < x_host.size(); ++i) x_host[i] = philox_normal(11, 0, i);
  std::vector<float> context(static_cast<size_t>(200) * c.text_dim);
  for (size_t i = 0; i < context.size(); ++i) context[i] = 0.2f * philox_normal(11, 1, i);
  const double timestep = 750;

  // GPU: the whole forward, keeping the residual stream before the checked blocks, after them, and at the end.
  std::map<int, std::vector<float>> residual;
  std::vector<float> v_gpu(x_host.size());
  {
    auto gpu = make_cuda_backend();
    wan::DiT dit = wan::make_dit(*gpu, source);
    dit.set_block_observer([&](int index, const Tensor& h) {
      if (check.count(index) || check.count(index - 1) || index == c.layers) {
        residual[index].resize(static_cast<size_t>(h.numel()));
        gpu->download(h, residual[index].data());
      }
    });
    Tensor x = gpu->allocate(shape, DType::f32), v = gpu->allocate(shape, DType::f32);
    gpu->upload(x, x_host.data());
    const auto cache = dit.encode_context(context, 200);
    dit.forward(v, x, timestep, cache);
    gpu->download(v, v_gpu.data());
  }
  std::printf("gpu forward done: %s, %lld tokens\n", source.describe().c_str(), static_cast<long long>(tokens));

  // CPU: the same weights in fp32.
  auto cpu = make_cpu_backend();
  wan::DiT dit = wan::make_dit(*cpu, source);
  const auto cache = dit.encode_context(context, 200);
  const wan::TimeEmbedding time = dit.time_embedding(timestep);
  const auto table = wan::rope_table(c.head_dim(), gf, gh, gw, 0, tokens);
  Tensor rope_cos = cpu->allocate({tokens, c.head_dim() / 2}, DType::f32);
  Tensor rope_sin = cpu->allocate({tokens, c.head_dim() / 2}, DType::f32);
  cpu->upload(rope_cos, table.cos.data());
  cpu->upload(rope_sin, table.sin.data());
  bool ok = true;
  for (const auto& [block, unused] : check) {
    if (block >= c.layers || !residual.count(block + 1)) continue;
    const Arena::Mark mark = cpu->arena().mark();
    Tensor h = cpu->allocate({tokens, c.dim}, DType::f32);
    cpu->upload(h, residual[block].data());
    const Tensor m = dit.block_modulation(block, time);
    const wan::AttentionInputs all = dit.attention_inputs(block, h, m, rope_cos, rope_sin);
    Tensor attn = cpu->allocate({slice_rows, c.heads, c.head_dim()}, DType::f32);
    cpu->attention(attn, nullptr, all.q.slice(first, first + slice_rows), all.k, all.v, tokens,
                   1.f / std::sqrt(static_cast<float>(c.head_dim())));
    Tensor h_slice = h.slice(first, first + slice_rows);
    dit.finish_block(block, h_slice, m, attn, cache);
    std::vector<float> want(static_cast<size_t>(slice_rows) * c.dim);
    cpu->download(h_slice, want.data());
    const std::vector<float> got(residual[block + 1].begin() + first * c.dim,
                                 residual[block + 1].begin() + (first + slice_rows) * c.dim);
    const double e = relative_l2(got, want);
    std::printf("block %2d, tokens [%lld, %lld): relative L2 GPU vs CPU %.3e\n", block, static_cast<long long>(first),
                static_cast<long long>(first + slice_rows), e);
    ok &= e < tolerance;
    cpu->arena().rewind(mark);
  }
  {
    Tensor h = cpu->allocate({tokens, c.dim}, DType::f32);
    cpu->upload(h, residual[c.layers].data());
    Tensor out = cpu->allocate({tokens, c.out_features()}, DType::f32), v = cpu->allocate(shape, DType::f32);
    dit.head(out, h, time);
    cpu->unpatchify(v, out);
    std::vector<float> want(x_host.size());
    cpu->download(v, want.data());
    const double e = relative_l2(v_gpu, want);
    std::printf("head, all tokens: relative L2 GPU vs CPU %.3e\n", e);
    ok &= e < tolerance;
  }
  std::printf("slice check %s (tolerance %.0e)\n", ok ? "passed" : "FAILED", tolerance);
  return ok ? 0 : 1;
}

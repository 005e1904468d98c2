// Encoding prompts with umT5-XXL-shaped weights (random, made on the device): time per prompt for a set of
// prompts at given token counts (EOS included), one prompt after another as `ditrun run` encodes them. Our encoder
// runs each prompt's real tokens only (model/text/umt5_encoder.h: the rows the reference keeps are the same
// numbers); `--lengths 512` times the reference's padded length too. The PyTorch peer is pytorch_umt5_encode.py.
//   text_encode_bench --config xxl --lengths 31,64,...  --iters 3 --json out.json
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/cuda_device.h"
#include "model/core/backend.h"
#include "model/text/umt5_config.h"
#include "model/text/umt5_encoder.h"
#include "model/text/umt5_weights.h"

using namespace ditrun;

int main(int argc, char** argv) {
  CLI::App app{"umT5 text-encoder benchmark"};
  std::string config_name = "xxl", backend_name = "cuda", json_path, lengths_text;
  int iters = 3, warmup = 1;
  app.add_option("--config", config_name, "tiny | xxl")->capture_default_str();
  app.add_option("--lengths", lengths_text, "token counts of the prompts, comma-separated (one prompt each)")
      ->required();
  app.add_option("--iters", iters, "timed passes over all prompts (median reported)")->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--backend", backend_name, "cpu | cuda")->capture_default_str();
  app.add_option("--json", json_path, "Write the result here");
  CLI11_PARSE(app, argc, argv);

  std::vector<int64_t> lengths;
  std::stringstream list(lengths_text);
  for (std::string item; std::getline(list, item, ',');) lengths.push_back(std::stoll(item));
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double base_memory = static_cast<double>(comm::current_cuda_device_memory_used());
  auto backend = backend_name == "cuda" ? make_cuda_backend() : make_cpu_backend();
  const text::Umt5Config config = text::umt5_config_named(config_name);
  const auto load_start = std::chrono::steady_clock::now();
  text::Umt5Encoder encoder(*backend, config, text::random_umt5_weights(*backend, config, 7));
  backend->synchronize();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  // Token ids: a fixed pseudo-random sequence over the vocabulary (EOS = 1 last), the same every run.
  std::vector<std::vector<int32_t>> prompts;
  uint64_t state = 12345;
  for (int64_t n : lengths) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      id = static_cast<int32_t>(2 + (state >> 33) % static_cast<uint64_t>(config.vocab - 2));
    }
    ids.back() = 1;
    prompts.push_back(std::move(ids));
  }
  std::vector<std::vector<double>> per_prompt(prompts.size());
  std::vector<double> totals;
  double checksum = 0;
  for (int pass = 0; pass < warmup + iters; ++pass) {
    double total = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      Tensor out = backend->allocate({static_cast<int64_t>(prompts[i].size()), config.d_model}, DType::f32);
      backend->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      encoder.encode(out, prompts[i]);
      backend->synchronize();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      total += ms;
      if (pass >= warmup) per_prompt[i].push_back(ms);
      if (pass == 0 && i == 0) {  // a value of the output, so a broken encoder shows
        std::vector<float> host(static_cast<size_t>(out.numel()));
        backend->download(out, host.data());
        for (float v : host) checksum += static_cast<double>(v) * v;
        checksum = std::sqrt(checksum / static_cast<double>(host.size()));
      }
    }
    if (pass >= warmup) totals.push_back(total);
    std::printf("pass %d: %zu prompts in %.1f ms%s\n", pass, prompts.size(), total, pass < warmup ? " (warm-up)" : "");
    std::fflush(stdout);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < prompts.size(); ++i)
    rows.push_back({{"tokens", prompts[i].size()}, {"ms_median", median(per_prompt[i])}});
  const double total_ms = median(totals);
  nlohmann::json result = {
      {"implementation", "ditrun"},
      {"backend", backend->name()},
      {"config", config.name},
      {"prompts", prompts.size()},
      {"iters", iters},
      {"ms_all_prompts_median", total_ms},
      {"ms_per_prompt", total_ms / static_cast<double>(prompts.size())},
      {"per_prompt", rows},
      {"weights_load_s", load_s},
      {"device_memory_gib", (static_cast<double>(comm::current_cuda_device_memory_used()) - base_memory) / gib},
      {"first_prompt_rms", checksum},
  };
  std::printf("%s\n", result.dump().c_str());
  if (!json_path.empty()) std::ofstream(json_path) << result.dump(2) << "\n";
  return 0;
}

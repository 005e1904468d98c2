// One DiT forward at real resolutions on the GPU: time, achieved TFLOP/s (model FLOPs of spec §2) and device
// memory, written as JSON (one entry per size). The PyTorch peer runs in the same job (pytorch_wan_forward.py).
//   dit_forward_bench --config 14b --sizes 832x480,1280x720 --frames 81 --iters 3 --json out.json
// With --gemm-tuning FILE every size runs twice, each time on a fresh backend and model: first with cuBLASLt's
// heuristic GEMM algorithms, then with those measured per shape and kept in FILE (the first forward of that pass
// measures the shapes FILE lacks: `ms_first` and `gemm_tuning` in the JSON show the cost).
// With --op-times (CUDA) one more forward runs with CUDA events around every op (model/cuda/op_timing.h) and the
// JSON gets `op_times`: GPU time, calls, TFLOP/s and share of that forward per op and shape. CUDA graphs are then
// off for the whole run (DITRUN_CUDA_GRAPHS=0), so the op-timed forward launches the same kernels as the others.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <nlohmann/json.hpp>

#include "model/core/backend.h"
#include "model/core/philox.h"
#include "model/cuda/gemm_tuning_cache.h"
#include "model/wan/dit_source.h"

#ifdef DITRUN_WITH_CUDA
#include <cuda_runtime.h>

#include "model/cuda/cuda_backend.h"
#include "model/cuda/op_timing.h"
#endif

using namespace ditrun;

namespace {

// Model FLOPs of one forward (spec §2): every projection incl. cross-attention K/V on the 512 context rows, and
// QKᵀ + PV of self- and cross-attention; 2 FLOP per multiply-add.
struct Flops {
  double linear, attention;
};
Flops model_flops(const wan::DitConfig& c, double tokens) {
  const double d = c.dim, f = c.ffn_dim, text = c.text_len;
  const double linear = 2.0 * c.layers * (tokens * (6 * d * d + 2 * d * f) + text * 2 * d * d);
  const double attention = c.layers * (4.0 * tokens * tokens * d + 4.0 * tokens * text * d);
  return {linear, attention};
}

double device_memory_used() {
#ifdef DITRUN_WITH_CUDA
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess) return static_cast<double>(total - free_bytes);
#endif
  return 0;
}

nlohmann::json gemm_tuning_json([[maybe_unused]] Backend& backend) {
#ifdef DITRUN_WITH_CUDA
  if (auto* cuda = dynamic_cast<CudaBackend*>(&backend)) {
    const cuda::GemmTuningStats& s = cuda->gemm_tuning_stats();
    return {{"file", cuda::gemm_tuning_file().string()}, {"tuned", s.tuned},      {"loaded", s.loaded},
            {"rejected", s.rejected},                     {"deferred", s.deferred}, {"tuning_ms", s.tuning_ms}};
  }
#endif
  return nullptr;
}

// One forward with every op timed (CUDA only): the table on stdout, the entries as JSON.
nlohmann::json op_times_json([[maybe_unused]] Backend& backend, [[maybe_unused]] const std::function<void()>& forward,
                             [[maybe_unused]] const std::string& label) {
#ifdef DITRUN_WITH_CUDA
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda) return nullptr;
  cuda::OpTiming& timing = cuda->op_timing();
  timing.collect();  // drop anything timed before
  backend.synchronize();
  timing.set_enabled(true);
  const auto t0 = std::chrono::steady_clock::now();
  forward();
  backend.synchronize();
  const double forward_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  timing.set_enabled(false);
  const auto entries = timing.collect();
  double sum_ms = 0;
  for (const auto& e : entries) sum_ms += e.ms;
  std::printf("%s: one forward with op timing %.1f ms, ops %.1f ms (%zu op shapes)\n", label.c_str(), forward_ms,
              sum_ms, entries.size());
  std::printf("  %-16s %-36s %6s %10s %9s %8s %7s\n", "op", "shape", "calls", "ms", "ms/call", "TFLOP/s", "share");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& e : entries) {
    const double tflops = e.flop > 0 ? e.flop / 1e12 / (e.ms / 1e3) : 0;
    std::printf("  %-16s %-36s %6lld %10.2f %9.3f %8.1f %6.1f%%\n", e.op.c_str(), e.shape.c_str(),
                static_cast<long long>(e.calls), e.ms, e.ms / e.calls, tflops, 100 * e.ms / forward_ms);
    rows.push_back({{"op", e.op},
                    {"shape", e.shape},
                    {"calls", e.calls},
                    {"ms", e.ms},
                    {"flop", e.flop},
                    {"tflops", tflops},
                    {"share_of_forward", e.ms / forward_ms}});
  }
  return {{"forward_ms", forward_ms}, {"ops_ms", sum_ms}, {"ops", rows}};
#else
  return nullptr;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"DiT forward benchmark"};
  std::string config = "1.3b", backend_name = "cuda", json_path, sizes = "832x480";
  int frames = 81, iters = 3, warmup = 1;
  app.add_option("--config", config, "tiny | 1.3b | 14b")->capture_default_str();
  app.add_option("--sizes", sizes, "WxH[,WxH...] video sizes")->capture_default_str();
  app.add_option("--frames", frames)->capture_default_str();
  app.add_option("--iters", iters)->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--backend", backend_name)->capture_default_str();
  app.add_option("--json", json_path, "Write the result here");
  std::string tuning_file;
  app.add_option("--gemm-tuning", tuning_file,
                 "GEMM tuning file: run every size untuned, then with the cuBLASLt algorithms measured per shape and "
                 "kept in this file (default: one pass, as $DITRUN_GEMM_TUNING says)");
  bool op_times = false;
  app.add_flag("--op-times", op_times,
               "one more forward with CUDA events around every op: GPU time per op and shape (turns CUDA graphs off)");
  CLI11_PARSE(app, argc, argv);
  if (op_times) setenv("DITRUN_CUDA_GRAPHS", "0", 1);

  nlohmann::json results = nlohmann::json::array();
  std::vector<std::string> passes = {cuda::gemm_tuning_file().string()};
  if (!tuning_file.empty()) passes = {"", tuning_file};
  for (const std::string& pass : passes) {
    cuda::set_gemm_tuning_file(pass);
    const double base_memory = device_memory_used();
    auto backend = backend_name == "cuda" ? make_cuda_backend() : make_cpu_backend();
    const auto source = wan::resolve_dit_source("random:" + config + ":1");
    const auto load_start = std::chrono::steady_clock::now();
    wan::DiT dit = wan::make_dit(*backend, source);
    backend->synchronize();
    const double load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    const auto& c = source.config;
    std::vector<float> context(static_cast<size_t>(c.text_len) * c.text_dim);
    for (size_t i = 0; i < context.size(); ++i) context[i] = 0.2f * philox_normal(7, 1, i);
    const auto cache = dit.encode_context(context, c.text_len);
    std::stringstream size_list(sizes);
    for (std::string size; std::getline(size_list, size, ',');) {
      const int width = std::stoi(size.substr(0, size.find('x')));
      const int height = std::stoi(size.substr(size.find('x') + 1));
      const Shape shape = {16, 1 + (frames - 1) / 4, height / 8, width / 8};
      const int64_t tokens = shape[1] * (shape[2] / 2) * (shape[3] / 2);
      std::vector<float> host(static_cast<size_t>(shape_numel(shape)));
      for (size_t i = 0; i < host.size(); ++i) host[i] = philox_normal(7, 0, i);
      Tensor x = backend->allocate(shape, DType::f32), v = backend->allocate(shape, DType::f32);
      backend->upload(x, host.data());
      std::vector<double> times;
      double first_ms = 0;
      for (int i = 0; i < warmup + iters; ++i) {
        backend->synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        dit.forward(v, x, 500.0, cache);
        backend->synchronize();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (i == 0) first_ms = ms;
        if (i >= warmup) times.push_back(ms);
        std::printf("%s %s%s forward %d: %.1f ms%s\n", c.name.c_str(), size.c_str(),
                    pass.empty() ? "" : " gemm-tuned", i, ms, i < warmup ? " (warm-up)" : "");
        std::fflush(stdout);
      }
      std::vector<float> out(host.size());
      backend->download(v, out.data());
      double norm = 0;
      for (float f : out) norm += static_cast<double>(f) * f;
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      const Flops flops = model_flops(c, static_cast<double>(tokens));
      const double total = flops.linear + flops.attention;
      nlohmann::json result = {
          {"implementation", "ditrun"},
          {"backend", backend->name()},
          {"config", c.name},
          {"size", size},
          {"latent", shape},
          {"tokens", tokens},
          {"iters", iters},
          {"ms_median", median},
          {"ms_all", times},
          {"model_tflop", total / 1e12},
          {"linear_tflop", flops.linear / 1e12},
          {"attention_tflop", flops.attention / 1e12},
          {"tflops_achieved", total / 1e12 / (median / 1e3)},
          {"device_memory_gib", (device_memory_used() - base_memory) / (1u << 30)},
          {"arena_gib", static_cast<double>(backend->arena().capacity()) / (1u << 30)},
          {"weights_load_seconds", load_seconds},
          {"output_rms", std::sqrt(norm / out.size())},
          {"ms_first", first_ms},
          {"gemm_tuning", gemm_tuning_json(*backend)},
      };
      if (op_times)
        result["op_times"] =
            op_times_json(*backend, [&] { dit.forward(v, x, 500.0, cache); }, c.name + " " + size);
      std::printf("%s\n", result.dump().c_str());
      results.push_back(result);
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}

// One Wan-VAE decode at real resolutions: 21 latent frames → 81 frames, time (frames left on the device: the
// video encoder is not timed), device memory, written as JSON (one entry per size). The PyTorch peer
// (pytorch_vae_decode.py) runs in the same job and counts the FLOPs of the same architecture and shape.
//   vae_decode_bench --vae random:wan2.1 --sizes 832x480,1280x720 --frames 81 --iters 2 --json out.json
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
#include "model/core/philox.h"
#include "model/wan/vae_source.h"

using namespace ditrun;

int main(int argc, char** argv) {
  CLI::App app{"Wan-VAE decode benchmark"};
  std::string vae_spec = "random:wan2.1", backend_name = "cuda", json_path, sizes = "832x480";
  int frames = 81, iters = 2, warmup = 1;
  app.add_option("--vae", vae_spec, "tiny | random:<tiny|wan2.1>[:seed] | model or vae/ folder")->capture_default_str();
  app.add_option("--sizes", sizes, "WxH[,WxH...] video sizes")->capture_default_str();
  app.add_option("--frames", frames, "video frames (1 + 4k)")->capture_default_str();
  app.add_option("--iters", iters)->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--backend", backend_name, "cpu | cuda")->capture_default_str();
  app.add_option("--json", json_path, "Write the result here");
  CLI11_PARSE(app, argc, argv);

  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double base_memory = static_cast<double>(comm::current_cuda_device_memory_used());
  auto backend = backend_name == "cuda" ? make_cuda_backend() : make_cpu_backend();
  const auto source = wan::resolve_vae_source(vae_spec);
  wan::VaeDecoder decoder = wan::make_vae_decoder(*backend, source);
  backend->synchronize();
  const auto& c = source.config;
  nlohmann::json results = nlohmann::json::array();
  std::stringstream size_list(sizes);
  for (std::string size; std::getline(size_list, size, ',');) {
    const int width = std::stoi(size.substr(0, size.find('x'))), height = std::stoi(size.substr(size.find('x') + 1));
    const int64_t sf = c.spatial_factor();
    const Shape shape = {c.z_dim, 1 + (frames - 1) / c.temporal_factor(), height / sf, width / sf};
    std::vector<float> host(static_cast<size_t>(shape_numel(shape)));
    for (size_t i = 0; i < host.size(); ++i) host[i] = philox_normal(11, 0, i);
    Tensor z = backend->allocate(shape, DType::f32);
    backend->upload(z, host.data());
    std::vector<double> times;
    double checksum = 0;
    int64_t frames_out = 0;
    for (int i = 0; i < warmup + iters; ++i) {
      backend->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      frames_out = 0;
      decoder.decode(z, [&](int64_t, const Tensor& chunk) { frames_out += chunk.dim(0); });
      backend->synchronize();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (i >= warmup) times.push_back(ms);
      std::printf("%s %s decode %d: %.1f ms%s\n", c.name.c_str(), size.c_str(), i, ms, i < warmup ? " (warm-up)" : "");
      std::fflush(stdout);
    }
    // A value of the output, so a broken decode shows: the last chunk's frames.
    decoder.decode(z, [&](int64_t first, const Tensor& chunk) {
      if (first + chunk.dim(0) < frames_out) return;
      std::vector<float> out(static_cast<size_t>(chunk.numel()));
      backend->download(chunk, out.data());
      for (float f : out) checksum += static_cast<double>(f) * f;
      checksum = std::sqrt(checksum / static_cast<double>(out.size()));
    });
    std::sort(times.begin(), times.end());
    nlohmann::json result = {
        {"implementation", "ditrun"},
        {"backend", backend->name()},
        {"vae", source.describe()},
        {"size", size},
        {"latent", shape},
        {"frames", frames_out},
        {"iters", iters},
        {"ms_median", times[times.size() / 2]},
        {"ms_all", times},
        {"device_memory_gib",
         (static_cast<double>(comm::current_cuda_device_memory_used()) - base_memory) / gib},
        {"arena_gib", static_cast<double>(backend->arena().capacity()) / gib},
        {"last_chunk_rms", checksum},
    };
    std::printf("%s\n", result.dump().c_str());
    results.push_back(result);
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}

// One Wan-VAE decode at real resolutions: 21 latent frames → 81 frames, time (frames left on the device: the
// video encoder is not timed), device memory, written as JSON (one entry per size). The PyTorch peer
// (pytorch_vae_decode.py) runs in the same job and counts the FLOPs of the same architecture and shape.
// Under mpirun the ranks are the VAE group (one GPU each): every rank decodes a band of rows with halo exchange
// (NCCL) and the whole frames of every chunk are gathered, as a video writer needs them; the time is the
// slowest rank's, all starting together.
//   vae_decode_bench --vae random:wan2.1 --sizes 832x480,1280x720 --frames 81 --iters 2 --json out.json
//   mpirun -np 2 vae_decode_bench --sizes 832x480 --json out.json
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/mpi_runtime.h"
#include "model/core/backend.h"
#include "model/core/philox.h"
#include "model/wan/vae_source.h"

using namespace ditrun;

namespace {

// conv3d alone at the Wan2.1 decoder's shapes (spec §4.3) for a latent of h × w: per stage the input of one chunk
// with its 2 cached frames, channels in → out, kernel; timed with the device synchronised around 10 calls.
nlohmann::json time_convolutions(Backend& backend, int64_t w, int64_t h) {
  struct Stage {
    const char* what;
    int64_t frames, scale, ci, co, kt, kh;
  };
  const Stage stages[] = {{"latent 384->384 3x3x3", 3, 1, 384, 384, 3, 3},
                          {"x2 384->384 3x3x3", 4, 2, 384, 384, 3, 3},
                          {"x4 192->192 3x3x3", 6, 4, 192, 192, 3, 3},
                          {"x8 96->96 3x3x3", 6, 8, 96, 96, 3, 3},
                          {"x8 96->3 3x3x3 (conv_out)", 6, 8, 96, 3, 3, 3},
                          {"x8 192->96 1x3x3 (upsample2d)", 4, 8, 192, 96, 1, 3},
                          {"x2 384->768 3x1x1 (time_conv)", 3, 1, 384, 768, 3, 1}};
  nlohmann::json rows = nlohmann::json::array();
  for (const Stage& s : stages) {
    const int64_t hh = h * s.scale, ww = w * s.scale, to = s.frames - s.kt + 1, pad = s.kh / 2;
    Tensor in = backend.allocate({s.frames, hh, ww, s.ci}, DType::f32);
    Tensor weight = backend.allocate({s.co, s.kt, s.kh, s.kh, s.ci}, DType::f32);
    Tensor bias = backend.allocate({s.co}, DType::f32);
    Tensor out = backend.allocate({to, hh, ww, s.co}, DType::f32);
    backend.fill_normal(in, 1, 0, 0.f, 1.f);
    backend.fill_normal(weight, 2, 0, 0.f, 0.02f);
    backend.fill_normal(bias, 3, 0, 0.f, 0.02f);
    backend.conv3d(out, in, weight, &bias, static_cast<int>(pad), static_cast<int>(pad));  // warm-up
    backend.synchronize();
    constexpr int kCalls = 10;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i)
      backend.conv3d(out, in, weight, &bias, static_cast<int>(pad), static_cast<int>(pad));
    backend.synchronize();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / kCalls;
    const double flop = 2.0 * static_cast<double>(to * hh * ww) * static_cast<double>(s.co * s.ci * s.kt * s.kh * s.kh);
    nlohmann::json row = {{"conv", s.what}, {"in", in.shape()}, {"out", out.shape()}, {"ms", ms},
                          {"tflops", flop / (ms / 1e3) / 1e12}};
    std::printf("conv %-32s %8.3f ms %7.1f TFLOP/s\n", s.what, ms, row["tflops"].get<double>());
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

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
  std::string conv_json;
  app.add_option("--conv-json", conv_json,
                 "Also time conv3d alone at each decoder stage's shape of the first size and write it here");
  CLI11_PARSE(app, argc, argv);
  comm::MpiRuntime mpi(&argc, &argv);
  if (backend_name == "cuda") comm::select_cuda_device(mpi.local_rank());
  std::vector<int> world(static_cast<size_t>(mpi.size()));
  for (int r = 0; r < mpi.size(); ++r) world[static_cast<size_t>(r)] = r;
  comm::Communicators comms({comm::GroupSet{"vae", {world}}},
                            backend_name == "cuda" ? comm::Backend::nccl : comm::Backend::mpi);
  const bool root = mpi.rank() == 0;

  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double base_memory = static_cast<double>(comm::current_cuda_device_memory_used());
  auto backend = backend_name == "cuda" ? make_cuda_backend() : make_cpu_backend();
  const auto source = wan::resolve_vae_source(vae_spec);
  wan::VaeDecoder decoder = wan::make_vae_decoder(*backend, source);
  decoder.split_rows_over(comms.get("vae").get());  // one rank: whole frames, no communication
  backend->synchronize();
  const auto& c = source.config;
  if (!conv_json.empty() && root) {  // first, so a decode that fails at a large size does not lose it
    const std::string first = sizes.substr(0, sizes.find(','));
    const int width = std::stoi(first.substr(0, first.find('x'))), height = std::stoi(first.substr(first.find('x') + 1));
    std::ofstream(conv_json) << time_convolutions(*backend, width / 8, height / 8).dump(2) << "\n";
    backend->arena().reset();
  }
  nlohmann::json results = nlohmann::json::array();
  if (iters < 1) return 0;  // --iters 0: the conv3d timings only
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
    const bool split = mpi.size() > 1;
    for (int i = 0; i < warmup + iters; ++i) {
      backend->synchronize();
      mpi.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      frames_out = 0;
      decoder.decode(z, [&](int64_t, const Tensor& band) {
        frames_out += (split ? decoder.gather_frames(band) : band).dim(0);
      });
      backend->synchronize();
      const double ms = mpi.max_over_ranks(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      if (i >= warmup) times.push_back(ms);
      if (root)
        std::printf("%s %s decode %d on %d rank%s: %.1f ms%s\n", c.name.c_str(), size.c_str(), i, mpi.size(),
                    split ? "s" : "", ms, i < warmup ? " (warm-up)" : "");
      std::fflush(stdout);
    }
    // A value of the output, so a broken decode shows: the last chunk's whole frames.
    decoder.decode(z, [&](int64_t first, const Tensor& band) {
      const Tensor chunk = split ? decoder.gather_frames(band) : band;
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
        {"vae_ranks", mpi.size()},
        {"ms_median", times[times.size() / 2]},
        {"ms_all", times},
        {"device_memory_gib",
         (static_cast<double>(comm::current_cuda_device_memory_used()) - base_memory) / gib},
        {"arena_gib", static_cast<double>(backend->arena().capacity()) / gib},
        {"last_chunk_rms", checksum},
    };
    if (root) std::printf("%s\n", result.dump().c_str());
    results.push_back(result);
  }
  if (!root) return 0;
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}

// Attention kernels alone at the model's shapes: the Hopper kernel (model/cuda/attention_sm90, every key tile) and
// the mma.sync kernel (model/cuda/attention.cu), bf16, head dim 128, non-causal, random data. Median of CUDA-event
// times after warm-up; FLOPs = 4·lq·lk·d·heads (lk = the valid keys). Writes JSON (bench/run_attention.sh merges it
// with the PyTorch peers).
//   attention_bench [--iters 10] [--warmup 2] [--old-iters 3] [--skip-old] [--shapes all|NAME,...] [--json out.json]
//                   [--cooldown-ms 1000]
// Each timing starts after --cooldown-ms of idle GPU: a kernel timed right after seconds of long ones runs at the
// lower clock the power cap has set by then (H100: the 512-key cross-attention took 0.696 ms after the 75,600-token
// shapes, 0.568 ms alone), and the SDPA peers are timed the same way.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

#include "comm/cuda_check.h"
#include "model/cuda/attention.h"
#include "model/cuda/attention_sm90.h"

namespace {

struct Shape {
  std::string name;
  int heads;
  int64_t lq, lk;
};

const std::vector<Shape> kShapes = {
    {"self_40x32760", 40, 32760, 32760},      // Wan 14B, 480p
    {"self_12x32760", 12, 32760, 32760},      // Wan 1.3B, 480p
    {"self_40x75600", 40, 75600, 75600},      // Wan 14B, 720p
    {"cross_40x32760x512", 40, 32760, 512},   // cross-attention over the 512 text tokens
};

// Fills n bf16 values on the device from a pool of random values already there (offset varies per tensor).
void fill_from_pool(__nv_bfloat16* dst, int64_t n, const __nv_bfloat16* pool, int64_t pool_n, int64_t offset) {
  int64_t done = 0;
  while (done < n) {
    const int64_t start = (offset + done * 7) % (pool_n / 2);
    const int64_t len = std::min(n - done, pool_n - start);
    DITRUN_CUDA_CHECK(cudaMemcpy(dst + done, pool + start, len * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice));
    done += len;
  }
}

struct Timing {
  double median_ms, min_ms;
  int iters;
};

int cooldown_ms = 1000;

Timing time_it(const std::function<void()>& run, int warmup, int iters) {
  DITRUN_CUDA_CHECK(cudaDeviceSynchronize());
  std::this_thread::sleep_for(std::chrono::milliseconds(cooldown_ms));
  for (int i = 0; i < warmup; ++i) run();
  DITRUN_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) DITRUN_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    DITRUN_CUDA_CHECK(cudaEventRecord(ev[2 * i]));
    run();
    DITRUN_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1]));
  }
  DITRUN_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> ms(iters);
  for (int i = 0; i < iters; ++i) {
    float t = 0;
    DITRUN_CUDA_CHECK(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = t;
  }
  for (auto& e : ev) DITRUN_CUDA_CHECK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  const double median = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
  return {median, ms.front(), iters};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"attention kernel benchmark"};
  int iters = 10, warmup = 2, old_iters = 3, old_warmup = 1;
  bool skip_old = false;
  std::string shapes_arg = "all", json_path, block_ns_arg = "128,176,192";
  app.add_option("--iters", iters, "timed runs of the sm90 kernel")->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--old-iters", old_iters, "timed runs of the mma.sync kernel (slow)")->capture_default_str();
  app.add_option("--old-warmup", old_warmup)->capture_default_str();
  app.add_flag("--skip-old", skip_old, "do not time the mma.sync kernel");
  app.add_option("--block-n", block_ns_arg, "key tiles of the sm90 kernel to time")->capture_default_str();
  app.add_option("--shapes", shapes_arg, "all, or names from: self_40x32760,self_12x32760,self_40x75600,"
                                         "cross_40x32760x512")
      ->capture_default_str();
  app.add_option("--json", json_path, "write the results here");
  app.add_option("--cooldown-ms", cooldown_ms, "idle time before each timing (same clock and power state for all)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<int> block_ns;
  {
    std::stringstream ss(block_ns_arg);
    for (std::string item; std::getline(ss, item, ',');) block_ns.push_back(std::stoi(item));
  }
  std::vector<Shape> shapes;
  for (const auto& s : kShapes)
    if (shapes_arg == "all" || ("," + shapes_arg + ",").find("," + s.name + ",") != std::string::npos)
      shapes.push_back(s);

  cudaDeviceProp prop{};
  DITRUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s\n", prop.name);

  int64_t max_q = 0, max_kv = 0;
  int max_heads = 0;
  for (const auto& s : shapes) {
    max_q = std::max(max_q, s.lq * s.heads * 128);
    max_kv = std::max(max_kv, s.lk * s.heads * 128);
    max_heads = std::max(max_heads, s.heads);
  }
  __nv_bfloat16 *q, *k, *v, *out, *pool;
  float* lse;
  DITRUN_CUDA_CHECK(cudaMalloc(&q, max_q * sizeof(__nv_bfloat16)));
  DITRUN_CUDA_CHECK(cudaMalloc(&out, max_q * sizeof(__nv_bfloat16)));
  DITRUN_CUDA_CHECK(cudaMalloc(&k, max_kv * sizeof(__nv_bfloat16)));
  DITRUN_CUDA_CHECK(cudaMalloc(&v, max_kv * sizeof(__nv_bfloat16)));
  DITRUN_CUDA_CHECK(cudaMalloc(&lse, max_q / 128 * sizeof(float)));
  // A pool of 16M random values (normal, σ = 1) on the device; tensors are filled from it at varying offsets.
  const int64_t pool_n = int64_t{1} << 24;
  {
    std::vector<__nv_bfloat16> h(pool_n);
    std::mt19937_64 rng(1234);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (auto& x : h) x = __float2bfloat16(normal(rng));
    DITRUN_CUDA_CHECK(cudaMalloc(&pool, pool_n * sizeof(__nv_bfloat16)));
    DITRUN_CUDA_CHECK(cudaMemcpy(pool, h.data(), pool_n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
  }

  nlohmann::json results = nlohmann::json::array();
  const float scale = 1.f / std::sqrt(128.f);
  for (const auto& s : shapes) {
    fill_from_pool(q, s.lq * s.heads * 128, pool, pool_n, 1);
    fill_from_pool(k, s.lk * s.heads * 128, pool, pool_n, 1000003);
    fill_from_pool(v, s.lk * s.heads * 128, pool, pool_n, 2000029);
    const double flop = 4.0 * static_cast<double>(s.lq) * static_cast<double>(s.lk) * 128.0 * s.heads;
    auto record = [&](const std::string& kernel, int block_n, const Timing& t) {
      const double tflops = flop / (t.median_ms * 1e-3) / 1e12;
      std::printf("%-20s %-22s block_n %3d  %9.3f ms (min %9.3f)  %7.1f TFLOP/s\n", s.name.c_str(), kernel.c_str(),
                  block_n, t.median_ms, t.min_ms, tflops);
      std::fflush(stdout);
      results.push_back({{"shape", s.name},
                         {"heads", s.heads},
                         {"lq", s.lq},
                         {"lk", s.lk},
                         {"head_dim", 128},
                         {"kernel", kernel},
                         {"block_n", block_n},
                         {"default", kernel == "fa2_mma_sync" ||
                                         block_n == ditrun::cuda::attention_sm90_default_block_n(s.lk)},
                         {"ms_median", t.median_ms},
                         {"ms_min", t.min_ms},
                         {"iters", t.iters},
                         {"tflops", tflops}});
    };
    for (const int bn : block_ns) {
      ditrun::cuda::AttentionSm90Options opt;
      opt.block_n = bn;
      const Timing t = time_it(
          [&] {
            ditrun::cuda::attention_bf16_sm90_ex(out, lse, q, k, v, s.lq, s.lk, s.lk, s.heads, 128, scale, opt,
                                                 nullptr);
          },
          warmup, iters);
      record("sm90_wgmma_tma", bn, t);
    }
    if (!skip_old) {
      const Timing t = time_it(
          [&] { ditrun::cuda::attention_bf16(out, lse, q, k, v, s.lq, s.lk, s.lk, s.heads, 128, scale, nullptr); },
          old_warmup, old_iters);
      record("fa2_mma_sync", 64, t);
    }
  }
  nlohmann::json doc = {{"benchmark", "attention"}, {"device", prop.name}, {"results", results}};
  if (!json_path.empty()) std::ofstream(json_path) << doc.dump(2) << "\n";
  for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(out),
                  static_cast<void*>(lse), static_cast<void*>(pool)})
    DITRUN_CUDA_CHECK(cudaFree(p));
  return 0;
}

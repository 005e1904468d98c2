// Time per denoising step (CFG: two DiT passes) for several parallel layouts of the same ranks, on GPUs with NCCL
// (or CPUs with MPI): speedup and efficiency against one GPU, bytes each rank sends per step (counted by the
// code, next to the formula), communication time measured alone, and the share of the sequence-parallel
// communication hidden behind compute, two ways: timed inside the step (comm-stream events against the compute
// stream's waits) and from step times (overlap off minus default, over that communication alone); the step with
// Ulysses head-group pipelining too; memory; and each layout's latent after the steps against layout 1's.
//   mpirun -np 2 sp_step_bench --config 14b --size 832x480 --layouts 1,cfg2,ulysses2,ring2 --json out.json
#include <CLI/CLI.hpp>
#include <mpi.h>

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
#include "bench/random_contexts.h"
#include "launcher/denoise.h"
#include "launcher/report.h"
#include "model/wan/dit_source.h"
#include "partition/plan.h"

using namespace ditrun;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

partition::LayoutRequest parse_layout(const std::string& name) {
  partition::LayoutRequest r;
  if (name == "1") return r;
  std::stringstream ss(name);
  for (std::string part; std::getline(ss, part, 'x');) {
    const auto digits = part.find_first_of("0123456789");
    const std::string axis = part.substr(0, digits);
    const int degree = std::stoi(part.substr(digits));
    if (axis == "cfg") r.cfg = degree;
    else if (axis == "ulysses") r.ulysses = degree;
    else if (axis == "ring") r.ring = degree;
    else throw std::runtime_error("layout part " + part + " (cfg<N>, ulysses<N>, ring<N>, joined by x)");
  }
  return r;
}

// Median seconds of `iters` runs of op, after `warmup`, all ranks starting together.
template <typename Op>
double median_seconds(comm::MpiRuntime& mpi, Backend& be, int warmup, int iters, Op op) {
  std::vector<double> t;
  for (int i = 0; i < warmup + iters; ++i) {
    be.synchronize();
    mpi.barrier();
    const auto start = Clock::now();
    op(i);
    be.synchronize();
    const double s = mpi.max_over_ranks(seconds_since(start));
    if (i >= warmup) t.push_back(s);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"time per denoising step for parallel layouts"};
  std::string config = "1.3b", size = "832x480", layouts_arg = "1,cfg2,ulysses2,ring2", json_path;
  int frames = 81, warmup = 1, iters = 2;
  app.add_option("--config", config)->capture_default_str();
  app.add_option("--size", size)->capture_default_str();
  app.add_option("--frames", frames)->capture_default_str();
  app.add_option("--layouts", layouts_arg)->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--iters", iters)->capture_default_str();
  std::string modes_arg = "default,off,pipelined";
  app.add_option("--json", json_path)->description("written after every layout, so a run cut short keeps its rows");
  app.add_option("--modes", modes_arg,
                 "overlap modes timed for sequence-parallel layouts: default (ring overlapped, Ulysses not), off "
                 "(nothing overlapped), pipelined (ring and Ulysses head groups overlapped)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  comm::MpiRuntime mpi(&argc, &argv);
  const bool gpu = comm::cuda_device_count() > 0;
  if (gpu) comm::select_cuda_device(mpi.local_rank());
  auto backend = gpu ? make_cuda_backend() : make_cpu_backend();
  Backend& be = *backend;
  const auto source = wan::resolve_dit_source("random:" + config + ":5");
  wan::DiT dit = wan::make_dit(be, source);
  const auto& c = source.config;
  const auto [cond, uncond] = bench::random_contexts(dit);
  be.synchronize();
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double model_memory = mpi.max_over_ranks(comm::current_cuda_device_memory_used() / gib);
  SamplingParams params;
  params.frames = frames;
  params.width = std::stoi(size.substr(0, size.find('x')));
  params.height = std::stoi(size.substr(size.find('x') + 1));
  params.steps = warmup + iters;
  const Shape shape = latent_shape(params);
  const int64_t tokens = shape[1] * (shape[2] / 2) * (shape[3] / 2);

  nlohmann::json rows = nlohmann::json::array();
  double one_gpu = 0;
  std::vector<float> one_gpu_latent;  // this rank's replica's latent under layout 1, the reference for the others
  std::stringstream list(layouts_arg);
  for (std::string name; std::getline(list, name, ',');) {
    const partition::Plan plan = partition::make_plan(parse_layout(name), partition::Topology(mpi.hosts()));
    const auto& l = plan.layout();
    comm::Communicators comms(plan_group_sets(plan), gpu ? comm::Backend::nccl : comm::Backend::mpi);
    auto cfg = comms.get("cfg"), ulysses = comms.get("ulysses"), ring = comms.get("ring"), sp_group = comms.get("sp");
    const auto& coord = *plan.roles(mpi.rank()).dit;
    const bool split = l.cfg == 2;
    const wan::ContextCache* my_cond = !split || coord.cfg == 0 ? &cond : nullptr;
    const wan::ContextCache* my_uncond = !split || coord.cfg == 1 ? &uncond : nullptr;
    nlohmann::json row = {{"layout", name}, {"ranks", l.ranks_per_replica()}, {"cfg", l.cfg},
                          {"ulysses", l.ulysses}, {"ring", l.ring}};
    // The exchanges are timed alone first, which also sets up NCCL's connections for this layout's communicators
    // so that the timed steps below do not pay for it; then the steps.
    // The formulas the counts must match (es: bytes per element of the compute dtype; one pass per rank when cfg
    // splits, else two).
    const double passes = split ? 1 : 2, layers = c.layers, d = c.head_dim();
    const double es = static_cast<double>(dtype_size(be.compute_dtype()));
    const int64_t sp_degree = l.sequence_parallel(), shard = (tokens + sp_degree - 1) / sp_degree;
    const double padded_heads = std::ceil(static_cast<double>(c.heads) / l.ulysses) * l.ulysses;
    row["ulysses_bytes_formula"] =
        passes * layers * 4 * (l.ulysses - 1.0) / l.ulysses * shard * padded_heads * d * es;
    row["ring_bytes_formula"] =
        passes * layers * (l.ring - 1.0) * 2 * shard * l.ulysses * (padded_heads / l.ulysses) * d * es;
    // Communication alone: the same exchanges, timed without compute.
    double comm_ms = 0;
    if (l.ring > 1) {
      const int64_t count = 2 * shard * l.ulysses * static_cast<int64_t>(padded_heads / l.ulysses) * c.head_dim();
      Tensor a = be.allocate({count}, be.compute_dtype()), b = be.allocate({count}, be.compute_dtype());
      const double one = median_seconds(mpi, be, 2, 5, [&](int) {
        ring->send_recv(a.data(), (ring->rank() + 1) % l.ring, b.data(), (ring->rank() - 1 + l.ring) % l.ring,
                        static_cast<size_t>(count), be.compute_dtype(), comm::Stream{be.stream_handle()})
            ->wait(comm::Stream{be.stream_handle()});
      });
      comm_ms += one * passes * layers * (l.ring - 1) * 1e3;
      row["ring_exchange_ms_per_step"] = one * passes * layers * (l.ring - 1) * 1e3;
    }
    if (l.ulysses > 1) {
      const int64_t count = shard * static_cast<int64_t>(padded_heads) * c.head_dim();
      Tensor a = be.allocate({count}, be.compute_dtype()), b = be.allocate({count}, be.compute_dtype());
      const double one = median_seconds(mpi, be, 2, 5, [&](int) {
        ulysses->all_to_all(a.data(), b.data(), static_cast<size_t>(count / l.ulysses), be.compute_dtype(),
                            comm::Stream{be.stream_handle()});
      });
      comm_ms += one * passes * layers * 4 * 1e3;
      row["ulysses_all_to_all_ms_per_step"] = one * passes * layers * 4 * 1e3;
    }
    if (split) {  // the velocity all-gather of the cfg pair, alone (in the step it also absorbs the pair's skew)
      const int64_t count = (sp_degree > 1 ? shard : tokens) * c.out_features();
      Tensor a = be.allocate({count}, DType::f32), b = be.allocate({2 * count}, DType::f32);
      const double one = median_seconds(mpi, be, 2, 5, [&](int) {
        cfg->all_gather(a.data(), b.data(), static_cast<size_t>(count), DType::f32, comm::Stream{be.stream_handle()});
      });
      row["cfg_all_gather_ms_per_step"] = one * 1e3;
      comm_ms += one * 1e3;
    }
    row["comm_ms_per_step_alone"] = comm_ms;
    for (const std::string mode : {"default", "off", "pipelined"}) {
      const bool wanted = modes_arg.find(mode) != std::string::npos;
      if (mode != "default" && (!wanted || l.sequence_parallel() == 1 || (mode == "pipelined" && l.ulysses == 1)))
        continue;
      const bool overlap = mode != "off";
      std::optional<parallel::SequenceParallel> sp;
      if (l.sequence_parallel() > 1)
        sp.emplace(*ulysses, *ring, tokens, parallel::Overlap{overlap, mode == "pipelined"});
      be.arena().reset_high_water();
      DenoiseLoop loop(dit, params, 9, cfg.get(), sp ? &*sp : nullptr, my_cond, my_uncond);
      const double step = median_seconds(mpi, be, warmup, iters, [&](int i) { loop.step(i); });
      if (mode != "default") {
        row["step_ms_" + mode] = step * 1e3;
        row["sp_comm_ms_per_step_" + mode] = mpi.max_over_ranks(sp->stats().comm_ms) / params.steps;
        row["sp_exposed_ms_per_step_" + mode] = mpi.max_over_ranks(sp->stats().exposed_ms) / params.steps;
        continue;
      }
      row["step_ms"] = step * 1e3;
      row["video_s_50_steps"] = step * 50;  // projected: 50 steps of this median step (no VAE)
      row["arena_peak_gib"] = mpi.max_over_ranks(be.arena().high_water() / gib);
      row["device_memory_used_gib"] = mpi.max_over_ranks(comm::current_cuda_device_memory_used() / gib);
      row["model_memory_gib"] = model_memory;
      if (name == "1") one_gpu = step;
      if (sp) {
        row["ulysses_bytes_per_step"] = sp->stats().ulysses_bytes / params.steps;
        row["ring_bytes_per_step"] = sp->stats().ring_bytes / params.steps;
        // Timed in the step itself (events on the comm and compute streams): what ran, and what compute waited.
        row["sp_comm_ms_per_step"] = mpi.max_over_ranks(sp->stats().comm_ms) / params.steps;
        row["sp_exposed_ms_per_step"] = mpi.max_over_ranks(sp->stats().exposed_ms) / params.steps;
        row["sp_hidden_share_timed"] =
            1.0 - row["sp_exposed_ms_per_step"].get<double>() /
                      std::max(row["sp_comm_ms_per_step"].get<double>(), 1e-9);
      }
      // Agreement with one GPU: the latent after the same steps from the same noise.
      const std::vector<float> latent = loop.gather_latent(*sp_group);
      if (name == "1") {
        one_gpu_latent = latent;
      } else if (one_gpu_latent.size() == latent.size()) {
        double diff = 0, ref = 0;
        for (size_t i = 0; i < latent.size(); ++i) {
          diff += (latent[i] - one_gpu_latent[i]) * static_cast<double>(latent[i] - one_gpu_latent[i]);
          ref += one_gpu_latent[i] * static_cast<double>(one_gpu_latent[i]);
        }
        row["latent_rel_l2_vs_1gpu"] = mpi.max_over_ranks(std::sqrt(diff / std::max(ref, 1e-30)));
      }
      row["cfg_bytes_per_step"] = split ? static_cast<double>(sp ? sp->shard_tokens() : tokens) * 64 * 4 : 0.0;
      row["cfg_exchange_ms_per_step"] = loop.cfg_exchange_seconds() / params.steps * 1e3;
    }
    // Hidden share of the sequence-parallel communication: what overlapping saved, over what it costs alone.
    const double sp_comm_ms =
        row.value("ring_exchange_ms_per_step", 0.0) + row.value("ulysses_all_to_all_ms_per_step", 0.0);
    if (row.contains("step_ms_off") && sp_comm_ms > 0)
      row["sp_comm_hidden_share"] = std::clamp(
          (row["step_ms_off"].get<double>() - row["step_ms"].get<double>()) / sp_comm_ms, 0.0, 1.0);
    if (one_gpu > 0) {
      row["speedup"] = one_gpu * 1e3 / row["step_ms"].get<double>();
      row["efficiency"] = row["speedup"].get<double>() / l.ranks_per_replica();
    }
    if (mpi.rank() == 0) std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
    rows.push_back(row);
    if (mpi.rank() == 0 && !json_path.empty())
      std::ofstream(json_path) << nlohmann::json{{"config", c.name}, {"size", size}, {"frames", frames},
                                                 {"tokens", tokens}, {"backend", be.name()}, {"ranks", mpi.size()},
                                                 {"warmup", warmup}, {"iters", iters}, {"layouts", rows}}.dump(2)
                               << "\n";
  }
  return 0;
}

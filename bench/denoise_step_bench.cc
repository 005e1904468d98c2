// One CFG denoising step (two DiT passes, the guidance combine, the UniPC update) on one GPU, run directly, with
// each forward recorded as a CUDA graph, and recorded whole (DenoiseLoop, StepRecording). Each mode has its own
// loop, restarted for every round of --steps steps, the way `ditrun run` keeps a loop for the prompts of one
// setting: a whole step is run directly in round 1, recorded in round 2 (reported apart, with the cost of capture
// and instantiation, and the host and device memory the recordings take) and replayed from round 3. The modes take
// turns round by round, so they see the same clocks.
//   denoise_step_bench --config 1.3b --size 832x480 --steps 3 --rounds 4 --json out.json
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "comm/cuda_device.h"
#include "bench/random_contexts.h"
#include "launcher/denoise.h"
#include "model/wan/dit_source.h"

using namespace ditrun;

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Resident host memory of this process in MiB (VmRSS), 0 where /proc is missing.
double host_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

StepRecording parse_mode(const std::string& name) {
  if (name == "none") return StepRecording::none;
  if (name == "forwards") return StepRecording::forwards;
  if (name == "whole_steps") return StepRecording::whole_steps;
  throw std::runtime_error("mode " + name + " (none, forwards or whole_steps)");
}

// The run's date (UTC), as the other benches' JSON carries it.
std::string today() {
  const std::time_t now = std::time(nullptr);
  char text[16];
  std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"one CFG denoising step: direct, forwards recorded, whole step recorded"};
  std::string config = "1.3b", size = "832x480", modes_arg = "none,forwards,whole_steps", json_path;
  std::string backend_name = "cuda";
  int frames = 81, steps = 3, rounds = 4;
  app.add_option("--config", config, "tiny | 1.3b | 14b")->capture_default_str();
  app.add_option("--size", size, "WxH")->capture_default_str();
  app.add_option("--frames", frames)->capture_default_str();
  app.add_option("--steps", steps, "steps per round (of a 50-step schedule's first steps: the same work)")
      ->capture_default_str();
  app.add_option("--rounds", rounds, "rounds per mode; whole steps replay from round 3")->capture_default_str();
  app.add_option("--modes", modes_arg, "none, forwards, whole_steps")->capture_default_str();
  app.add_option("--backend", backend_name, "cuda | cpu (the CPU records nothing: control flow only)")
      ->capture_default_str();
  app.add_option("--json", json_path, "write the result here");
  CLI11_PARSE(app, argc, argv);
  if (steps < 1 || rounds < 1) {
    std::fprintf(stderr, "denoise_step_bench: --steps and --rounds must be at least 1\n");
    return 2;
  }

  auto backend = backend_name == "cuda" ? make_cuda_backend() : make_cpu_backend();
  Backend& be = *backend;
  const auto source = wan::resolve_dit_source("random:" + config + ":5");
  wan::DiT dit = wan::make_dit(be, source);
  const auto& c = source.config;
  const auto [cond, uncond] = bench::random_contexts(dit);
  SamplingParams params;  // UniPC, guidance 5, shift 5; only the first `steps` of its 50 are run
  params.frames = frames;
  params.width = std::stoi(size.substr(0, size.find('x')));
  params.height = std::stoi(size.substr(size.find('x') + 1));
  const Shape shape = latent_shape(params);
  const int64_t tokens = shape[1] * (shape[2] / 2) * (shape[3] / 2);
  be.synchronize();

  std::vector<std::string> modes;
  std::stringstream list(modes_arg);
  for (std::string m; std::getline(list, m, ',');) modes.push_back(m);
  std::map<std::string, std::unique_ptr<DenoiseLoop>> loops;
  std::map<std::string, std::vector<std::vector<double>>> step_ms;  // per mode, per round, per step
  std::map<std::string, nlohmann::json> recording_round;
  for (const std::string& m : modes)
    loops[m] = std::make_unique<DenoiseLoop>(dit, params, 9, nullptr, nullptr, &cond, &uncond, parse_mode(m));

  for (int round = 0; round < rounds; ++round) {
    for (const std::string& m : modes) {
      DenoiseLoop& loop = *loops[m];
      if (round > 0) loop.restart(9, &cond, &uncond);
      be.synchronize();
      const Backend::RecordingStats before = be.recording_stats();
      const double rss_before = host_rss_mib();
      const double device_before = static_cast<double>(comm::current_cuda_device_memory_used()) / (1 << 20);
      std::vector<double> times;
      for (int i = 0; i < steps; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        loop.step(i);
        be.synchronize();
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      const Backend::RecordingStats after = be.recording_stats();
      std::printf("%s %s %s round %d:", c.name.c_str(), size.c_str(), m.c_str(), round + 1);
      for (double t : times) std::printf(" %.1f", t);
      std::printf(" ms (recorded %lld, replayed %lld)\n", static_cast<long long>(after.recorded - before.recorded),
                  static_cast<long long>(after.replayed - before.replayed));
      std::fflush(stdout);
      if (after.recorded > before.recorded) {  // the round that made the recordings: what they cost
        const double made = static_cast<double>(after.recorded - before.recorded);
        recording_round[m] = {
            {"round", round + 1},
            {"recordings", after.recorded - before.recorded},
            {"nodes_per_recording", static_cast<double>(after.nodes - before.nodes) / made},
            {"record_ms_per_recording", (after.record_ms - before.record_ms) / made},
            {"host_rss_growth_mib", host_rss_mib() - rss_before},
            {"device_memory_growth_mib",
             static_cast<double>(comm::current_cuda_device_memory_used()) / (1 << 20) - device_before}};
      }
      step_ms[m].push_back(times);
    }
  }

  nlohmann::json rows = nlohmann::json::array();
  for (const std::string& m : modes) {
    const auto& r = step_ms[m];
    std::vector<double> later;  // rounds 3 on: whole steps replay, forwards replay, direct is warm
    for (size_t k = 2; k < r.size(); ++k) later.insert(later.end(), r[k].begin(), r[k].end());
    nlohmann::json row = {{"mode", m},
                          {"in_effect", step_recording_name(loops[m]->recording_in_effect())},
                          {"round_step_ms", r},
                          {"round1_median_ms", median(r[0])},
                          {"round2_median_ms", r.size() > 1 ? median(r[1]) : 0.0},
                          {"round3_on_median_ms", median(later)}};
    if (recording_round.count(m)) row["recording"] = recording_round[m];
    rows.push_back(row);
  }
  const double direct = rows[0]["round3_on_median_ms"].get<double>();
  std::printf("%-12s %10s %10s %12s   %s\n", "mode", "round 1", "round 2", "round 3+ ms",
              ("vs " + modes[0]).c_str());
  for (const auto& row : rows)
    std::printf("%-12s %10.1f %10.1f %12.1f %9.3f\n", row["mode"].get<std::string>().c_str(),
                row["round1_median_ms"].get<double>(), row["round2_median_ms"].get<double>(),
                row["round3_on_median_ms"].get<double>(),
                row["round3_on_median_ms"].get<double>() / std::max(direct, 1e-9));
  const nlohmann::json doc = {{"benchmark", "denoise_step"}, {"config", c.name},   {"size", size},
                              {"frames", frames},            {"tokens", tokens},   {"steps_per_round", steps},
                              {"rounds", rounds},            {"backend", be.name()}, {"modes", rows},
                              {"device", backend_name == "cuda" ? comm::current_cuda_device_name() : "cpu"},
                              {"date", today()}};
  std::printf("%s\n", doc.dump().c_str());
  if (!json_path.empty()) std::ofstream(json_path) << doc.dump(2) << "\n";
  return 0;
}

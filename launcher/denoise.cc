#include "launcher/denoise.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "io/hdf5_file.h"
#include "model/sampling/noise.h"
#include "model/sampling/schedule.h"
#include "model/parallel/sequence_parallel.h"
#include "model/sampling/solver.h"

namespace ditrun {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

Shape latent_shape(const SamplingParams& s) {
  return {16, 1 + (s.frames - 1) / 4, s.height / 8, s.width / 8};
}

std::string latents_path(const Job& job, const PromptItem& prompt) {
  return (std::filesystem::path(job.output.dir) / (prompt.id + ".latents.h5")).string();
}

nlohmann::json denoise_prompt(DenoiseContext& c, const PromptItem& prompt) {
  const std::string out_path = latents_path(c.job, prompt);
  nlohmann::json entry = {{"id", prompt.id}, {"output", out_path}};
  if (std::filesystem::exists(out_path)) {  // complete outputs are kept: a rerun redoes only what is missing
    entry["status"] = "skipped (output exists)";
    return entry;
  }
  const auto start = Clock::now();
  Backend& be = c.dit.backend();
  const SamplingParams& s = prompt.sampling;
  const Shape shape = latent_shape(s);
  const int64_t numel = shape_numel(shape);
  const bool use_cfg = s.guidance != 1.0;
  const bool split_cfg = use_cfg && c.cfg && c.cfg->size() == 2;
  // With a cfg pair, rank 0 of the pair runs the conditional pass and rank 1 the unconditional one.
  const bool runs_cond = !split_cfg || c.cfg->rank() == 0;
  const bool runs_uncond = use_cfg && (!split_cfg || c.cfg->rank() == 1);

  auto t = Clock::now();
  wan::ContextCache cond, uncond;
  if (runs_cond) {
    const Embedding e = c.embeddings.context(prompt.id);
    cond = c.dit.encode_context(e.values, e.rows);
  }
  if (runs_uncond) {
    const Embedding e = c.embeddings.negative(prompt.id);
    uncond = c.dit.encode_context(e.values, e.rows);
  }
  be.synchronize();
  entry["context_seconds"] = seconds_since(t);

  // The latent in token form, this rank's shard of it (all of it without sequence parallel).
  const wan::DiT::Grid grid{shape[1], shape[2] / 2, shape[3] / 2};
  const int features = c.dit.config().out_features();
  std::optional<parallel::SequenceParallel> sp;
  if (c.sp && c.sp->size() > 1) sp.emplace(*c.ulysses, *c.ring, grid.tokens());
  const int64_t rows = sp ? sp->shard_tokens() : grid.tokens();
  const int64_t first = sp ? sp->first_token() : 0;
  const Shape token_shape = {rows, features};
  const int64_t local = rows * features;

  const sampling::Schedule schedule = sampling::flow_schedule(s.steps, s.shift, sampling::SigmaGrid::wan);
  auto solver = sampling::make_solver(s.solver, be, schedule, token_shape);
  Tensor x = be.allocate(token_shape, DType::f32);
  {
    const auto noise = sampling::token_noise(prompt.seed, shape[0], shape[1], shape[2], shape[3], first, rows);
    be.upload(x, noise.data());
  }
  // Both velocities side by side, so a cfg pair exchanges them with one all-gather.
  Tensor pair = be.allocate({2, local}, DType::f32);
  Tensor v_cond = pair.slice(0, 1).view(token_shape), v_uncond = pair.slice(1, 2).view(token_shape);
  Tensor v = be.allocate(token_shape, DType::f32);
  const comm::Stream stream{be.stream_handle()};

  nlohmann::json step_seconds = nlohmann::json::array();
  double comm_seconds = 0;
  parallel::SequenceParallel* sp_ptr = sp ? &*sp : nullptr;
  for (int i = 0; i < s.steps; ++i) {
    t = Clock::now();
    const double timestep = schedule.timesteps[i];
    if (runs_cond) c.dit.forward_tokens(v_cond, x, grid, timestep, cond, sp_ptr);
    if (runs_uncond) c.dit.forward_tokens(v_uncond, x, grid, timestep, uncond, sp_ptr);
    if (split_cfg) {
      const auto tc = Clock::now();
      Tensor mine = c.cfg->rank() == 0 ? v_cond : v_uncond;
      c.cfg->all_gather(mine.data(), pair.data(), static_cast<size_t>(local), DType::f32, stream);
      be.synchronize();
      comm_seconds += seconds_since(tc);
    }
    if (use_cfg) {  // v = v_u + g·(v_c − v_u)
      const float g = static_cast<float>(s.guidance);
      const float coeffs[2] = {g, 1.f - g};
      const Tensor* in[2] = {&v_cond, &v_uncond};
      be.lincomb(v, coeffs, in);
      solver->step(i, v, x);
    } else {
      solver->step(i, v_cond, x);
    }
    be.synchronize();
    step_seconds.push_back(seconds_since(t));
    if (c.shows_steps) c.progress.bar(prompt.id + " step", i + 1, s.steps);
  }

  // The shards come together once, for the output.
  Tensor all_tokens = x;
  if (sp) {
    all_tokens = be.allocate({rows * c.sp->size(), features}, DType::f32);
    c.sp->all_gather(x.data(), all_tokens.data(), static_cast<size_t>(local), DType::f32, stream);
    be.synchronize();
  }
  if (c.writes_output) {
    Tensor latent = be.allocate(shape, DType::f32);
    be.unpatchify(latent, all_tokens.slice(0, grid.tokens()));
    std::vector<float> host(static_cast<size_t>(numel));
    be.download(latent, host.data());
    io::Hdf5Writer writer(out_path);
    writer.file().write_f32("latents", host.data(), shape);
    writer.file().write_attribute("/", "prompt_id", prompt.id);
    writer.file().write_attribute("/", "prompt", prompt.prompt);
    writer.file().write_attribute("/", "seed", std::to_string(prompt.seed));
    writer.file().write_attribute("/", "steps", std::to_string(s.steps));
    writer.file().write_attribute("/", "solver", s.solver);
    writer.commit();
  }
  if (sp) {
    entry["sequence_parallel"] = {{"degree", sp->degree()},
                                  {"shard_tokens", rows},
                                  {"ulysses_bytes_sent", sp->stats().ulysses_bytes},
                                  {"ring_bytes_sent", sp->stats().ring_bytes}};
  }
  entry["status"] = "done";
  entry["seed"] = prompt.seed;
  entry["steps"] = s.steps;
  entry["latent_shape"] = shape;
  entry["step_seconds"] = step_seconds;
  entry["cfg_exchange_seconds"] = comm_seconds;
  entry["seconds"] = seconds_since(start);
  return entry;
}

}  // namespace ditrun

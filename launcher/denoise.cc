#include "launcher/denoise.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "io/hdf5_file.h"
#include "launcher/cfg_passes.h"
#include "launcher/video_output.h"
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

std::string video_path(const Job& job, const PromptItem& prompt) {
  return (std::filesystem::path(job.output.dir) / (prompt.id + (job.output.codec == "y4m" ? ".y4m" : ".mp4")))
      .string();
}

DenoiseLoop::DenoiseLoop(wan::DiT& dit, const SamplingParams& s, uint64_t seed, comm::Comm* cfg,
                         parallel::SequenceParallel* sp, const wan::ContextCache* cond,
                         const wan::ContextCache* uncond)
    : dit_(dit), params_(s), cfg_(cfg), sp_(sp), cond_(cond), uncond_(uncond), shape_(latent_shape(s)),
      grid_{shape_[1], shape_[2] / 2, shape_[3] / 2},
      schedule_(sampling::flow_schedule(s.steps, s.shift, sampling::SigmaGrid::wan)) {
  Backend& be = dit.backend();
  const int features = dit.config().out_features();
  rows_ = sp ? sp->shard_tokens() : grid_.tokens();
  const int64_t first = sp ? sp->first_token() : 0;
  const Shape token_shape = {rows_, features};
  solver_ = sampling::make_solver(s.solver, be, schedule_, token_shape);
  x_ = be.allocate(token_shape, DType::f32);
  const auto noise = sampling::token_noise(seed, shape_[0], shape_[1], shape_[2], shape_[3], first, rows_);
  be.upload(x_, noise.data());
  // Both velocities side by side, so a cfg pair exchanges them with one all-gather.
  pair_ = be.allocate({2, rows_ * features}, DType::f32);
  v_cond_ = pair_.slice(0, 1).view(token_shape);
  v_uncond_ = pair_.slice(1, 2).view(token_shape);
  v_ = be.allocate(token_shape, DType::f32);
}

void DenoiseLoop::step(int i) {
  Backend& be = dit_.backend();
  const double timestep = schedule_.timesteps[i];
  if (cond_) dit_.forward_tokens(v_cond_, x_, grid_, timestep, *cond_, sp_);
  if (uncond_) dit_.forward_tokens(v_uncond_, x_, grid_, timestep, *uncond_, sp_);
  const bool split = cfg_ && cfg_->size() == 2 && params_.guidance != 1.0;
  if (split) {
    be.synchronize();  // the exchange alone is timed (with the pair's skew), not the passes before it
    const auto t = Clock::now();
    Tensor& mine = cfg_->rank() == 0 ? v_cond_ : v_uncond_;
    cfg_->all_gather(mine.data(), pair_.data(), static_cast<size_t>(mine.numel()), DType::f32,
                     comm::Stream{be.stream_handle()});
    be.synchronize();
    cfg_seconds_ += seconds_since(t);
  }
  if (params_.guidance != 1.0) {  // v = v_u + g·(v_c − v_u)
    const float g = static_cast<float>(params_.guidance);
    const float coeffs[2] = {g, 1.f - g};
    const Tensor* in[2] = {&v_cond_, &v_uncond_};
    be.lincomb(v_, coeffs, in);
    solver_->step(i, v_, x_);
  } else {
    solver_->step(i, v_cond_, x_);
  }
  if (sp_) sp_->settle_timing(be);
}

std::vector<float> DenoiseLoop::gather_latent(comm::Comm& sp_group) {
  Backend& be = dit_.backend();
  const Arena::Mark mark = be.arena().mark();
  const Tensor latent = parallel::gather_latent(be, sp_group, x_, shape_);
  std::vector<float> host(static_cast<size_t>(latent.numel()));
  be.download(latent, host.data());
  be.arena().rewind(mark);
  return host;
}

std::vector<bool> prompts_to_render(const Job& job) {
  std::vector<bool> pending;
  for (const PromptItem& p : job.prompts) pending.push_back(!std::filesystem::exists(video_path(job, p)));
  return pending;
}

nlohmann::json skipped_prompt_entry(const Job& job, const PromptItem& prompt) {
  // The video is written last: a prompt with its video is complete, and a rerun redoes only what is missing.
  return {{"id", prompt.id},
          {"output", latents_path(job, prompt)},
          {"video", video_path(job, prompt)},
          {"status", "skipped (output exists)"}};
}

nlohmann::json denoise_prompt(DenoiseContext& c, size_t index, const PromptItem& prompt) {
  const std::string out_path = latents_path(c.job, prompt), video = video_path(c.job, prompt);
  nlohmann::json entry = {{"id", prompt.id}, {"output", out_path}, {"video", video}};
  const auto start = Clock::now();
  Backend& be = c.dit.backend();
  const SamplingParams& s = prompt.sampling;
  const CfgPasses passes = cfg_passes(s, c.cfg ? c.cfg->size() : 1, c.cfg ? c.cfg->rank() : 0);

  // The embeddings: read, received from the prompt's encoder, or encoded here (shared text role).
  auto t = Clock::now();
  PromptEmbedding e = c.embeddings.get(index, prompt, passes.cond, passes.uncond);
  entry["text_wait_seconds"] = seconds_since(t);
  t = Clock::now();
  wan::ContextCache cond, uncond;
  if (passes.cond) cond = c.dit.encode_context(e.context->values, e.context->rows);
  if (passes.uncond) uncond = c.dit.encode_context(e.negative->values, e.negative->rows);
  be.synchronize();
  entry["context_seconds"] = seconds_since(t);

  const Shape shape = latent_shape(s);
  std::optional<parallel::SequenceParallel> sp;
  if (c.sp && c.sp->size() > 1)
    sp.emplace(*c.ulysses, *c.ring, shape[1] * (shape[2] / 2) * (shape[3] / 2),
               parallel::Overlap{c.job.ring_overlap, c.job.ulysses_overlap});
  DenoiseLoop loop(c.dit, s, prompt.seed, c.cfg, sp ? &*sp : nullptr, passes.cond ? &cond : nullptr,
                   passes.uncond ? &uncond : nullptr);
  nlohmann::json step_seconds = nlohmann::json::array();
  entry["denoise_started_s"] = c.clock.now();
  for (int i = 0; i < loop.steps(); ++i) {
    t = Clock::now();
    loop.step(i);
    be.synchronize();
    step_seconds.push_back(seconds_since(t));
    if (c.shows_steps) c.progress.bar(prompt.id + " step", i + 1, loop.steps());
  }
  // The shards come together once, for the output.
  const std::vector<float> latent = loop.gather_latent(*c.sp);
  entry["denoise_finished_s"] = c.clock.now();
  if (c.writes_output) {
    io::Hdf5Writer writer(out_path);
    writer.file().write_f32("latents", latent.data(), shape);
    writer.file().write_attribute("/", "prompt_id", prompt.id);
    writer.file().write_attribute("/", "prompt", prompt.prompt);
    writer.file().write_attribute("/", "seed", std::to_string(prompt.seed));
    writer.file().write_attribute("/", "steps", std::to_string(s.steps));
    writer.file().write_attribute("/", "solver", s.solver);
    writer.commit();
  }
  if (c.writes_output && c.hand_over) c.hand_over(latent);  // dedicated VAE ranks decode while we go on
  if (c.vae) {  // shared VAE role: the writing rank decodes while its replica's other ranks wait for the next prompt
    t = Clock::now();
    const Arena::Mark mark = be.arena().mark();
    Tensor z = be.scratch(shape, DType::f32);
    be.upload(z, latent.data());
    const int64_t frames = decode_to_video(*c.vae, z, video,
                                           VideoSettings{c.job.output.fps, c.job.output.crf, c.job.output.preset});
    be.arena().rewind(mark);
    entry["frames"] = frames;
    entry["vae_seconds"] = seconds_since(t);
  }
  if (sp) {
    entry["sequence_parallel"] = {{"degree", sp->degree()},
                                  {"shard_tokens", sp->shard_tokens()},
                                  {"ulysses_bytes_sent", sp->stats().ulysses_bytes},
                                  {"ring_bytes_sent", sp->stats().ring_bytes},
                                  {"comm_ms", sp->stats().comm_ms},
                                  {"comm_exposed_ms", sp->stats().exposed_ms},
                                  {"comm_hidden_share", sp->stats().hidden_share()}};
  }
  entry["status"] = "done";
  entry["seed"] = prompt.seed;
  entry["steps"] = s.steps;
  entry["latent_shape"] = shape;
  entry["step_seconds"] = step_seconds;
  entry["cfg_exchange_seconds"] = loop.cfg_exchange_seconds();
  entry["seconds"] = seconds_since(start);
  return entry;
}

}  // namespace ditrun

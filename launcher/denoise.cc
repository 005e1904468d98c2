#include "launcher/denoise.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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

StepRecording step_recording_from_environment() {
  const char* env = std::getenv("DITRUN_CUDA_GRAPHS");
  const std::string value = env ? env : "";
  if (value == "0") return StepRecording::none;
  if (value == "forward") return StepRecording::forwards;
  return StepRecording::whole_steps;
}

const char* step_recording_name(StepRecording recording) {
  switch (recording) {
    case StepRecording::none: return "none";
    case StepRecording::forwards: return "forwards";
    case StepRecording::whole_steps: return "whole steps";
  }
  return "?";
}

namespace {
uint64_t next_loop_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}
}  // namespace

DenoiseLoop::DenoiseLoop(wan::DiT& dit, const SamplingParams& s, uint64_t seed, comm::Comm* cfg,
                         parallel::SequenceParallel* sp, const wan::ContextCache* cond,
                         const wan::ContextCache* uncond, StepRecording recording)
    : dit_(dit), params_(s), cfg_(cfg), sp_(sp), recording_(recording), shape_(latent_shape(s)),
      grid_{shape_[1], shape_[2] / 2, shape_[3] / 2},
      schedule_(sampling::flow_schedule(s.steps, s.shift, sampling::SigmaGrid::wan)), id_(next_loop_id()) {
  Backend& be = dit.backend();
  const int features = dit.config().out_features();
  rows_ = sp ? sp->shard_tokens() : grid_.tokens();
  const Shape token_shape = {rows_, features};
  solver_ = sampling::make_solver(s.solver, be, schedule_, token_shape);
  x_ = be.allocate(token_shape, DType::f32);
  // Both velocities side by side, so a cfg pair exchanges them with one all-gather.
  pair_ = be.allocate({2, rows_ * features}, DType::f32);
  v_cond_ = pair_.slice(0, 1).view(token_shape);
  v_uncond_ = pair_.slice(1, 2).view(token_shape);
  v_ = be.allocate(token_shape, DType::f32);
  restart(seed, cond, uncond);
}

DenoiseLoop::~DenoiseLoop() {
  // The recordings of this loop's steps and forwards use its buffers, which go now.
  dit_.backend().forget_recorded(step_recording_key(-1));
  dit_.forget_recorded_forwards(v_cond_);
  dit_.forget_recorded_forwards(v_uncond_);
}

void DenoiseLoop::restart(uint64_t seed, const wan::ContextCache* cond, const wan::ContextCache* uncond) {
  cond_ = cond;
  uncond_ = uncond;
  const int64_t first = sp_ ? sp_->first_token() : 0;
  const auto noise = sampling::token_noise(seed, shape_[0], shape_[1], shape_[2], shape_[3], first, rows_);
  dit_.backend().upload(x_, noise.data());
}

bool DenoiseLoop::splits_cfg() const { return cfg_ && cfg_->size() == 2 && params_.guidance != 1.0; }

bool DenoiseLoop::records_whole_steps() const {
  // Sequence parallel and the cfg pair's exchange communicate; an observer calls back to the host.
  return recording_ == StepRecording::whole_steps && !sp_ && !splits_cfg() && !dit_.observed();
}

StepRecording DenoiseLoop::recording_in_effect() const {
  if (records_whole_steps()) return StepRecording::whole_steps;
  if (recording_ == StepRecording::none || sp_ || dit_.observed()) return StepRecording::none;
  return StepRecording::forwards;
}

std::string DenoiseLoop::step_recording_key(int i) const {
  // The loop's buffers, schedule and guidance are fixed for its life; the model and the context caches are named
  // too. i < 0: the prefix common to all of this loop's steps.
  std::string key = "denoise " + std::to_string(id_) + " ";
  if (i < 0) return key;
  char rest[128];
  std::snprintf(rest, sizeof rest, "step %d dit %llu cond %llx uncond %llx", i,
                static_cast<unsigned long long>(dit_.id()),
                static_cast<unsigned long long>(cond_ ? wan::context_address_hash(*cond_) : 0),
                static_cast<unsigned long long>(uncond_ ? wan::context_address_hash(*uncond_) : 0));
  return key + rest;
}

void DenoiseLoop::step(int i) {
  Backend& be = dit_.backend();
  const double timestep = schedule_.timesteps[i];
  if (records_whole_steps()) {
    // The host's part once (both passes read the same timestep), then the step's device work as one recording:
    // no host round-trip between the passes, the combine and the update.
    const wan::DiT::PreparedForward prepared = dit_.prepare_forward(timestep, grid_, nullptr);
    be.run_recorded(step_recording_key(i), [&] {
      if (cond_) dit_.forward_prepared(v_cond_, x_, prepared, *cond_, nullptr);
      if (uncond_) dit_.forward_prepared(v_uncond_, x_, prepared, *uncond_, nullptr);
      combine_and_update(i);
    });
    return;
  }
  const auto pass = [&](Tensor& v, const wan::ContextCache& context) {
    if (recording_ == StepRecording::none)
      dit_.forward_prepared(v, x_, dit_.prepare_forward(timestep, grid_, sp_), context, sp_);
    else
      dit_.forward_tokens(v, x_, grid_, timestep, context, sp_);  // each forward recorded where it can be
  };
  if (cond_) pass(v_cond_, *cond_);
  if (uncond_) pass(v_uncond_, *uncond_);
  if (splits_cfg()) {
    be.synchronize();  // the exchange alone is timed (with the pair's skew), not the passes before it
    const auto t = Clock::now();
    Tensor& mine = cfg_->rank() == 0 ? v_cond_ : v_uncond_;
    cfg_->all_gather(mine.data(), pair_.data(), static_cast<size_t>(mine.numel()), DType::f32,
                     comm::Stream{be.stream_handle()});
    be.synchronize();
    cfg_seconds_ += seconds_since(t);
  }
  combine_and_update(i);
  if (sp_) sp_->settle_timing(be);
}

void DenoiseLoop::combine_and_update(int i) {
  Backend& be = dit_.backend();
  if (params_.guidance != 1.0) {  // v = v_u + g·(v_c − v_u)
    const float g = static_cast<float>(params_.guidance);
    const float coeffs[2] = {g, 1.f - g};
    const Tensor* in[2] = {&v_cond_, &v_uncond_};
    be.lincomb(v_, coeffs, in);
    solver_->step(i, v_, x_);
  } else {
    solver_->step(i, v_cond_, x_);
  }
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

namespace {
// Settings that fix a loop's buffers, schedule and recorded work; the seed and the prompt do not.
bool same_loop_settings(const SamplingParams& a, const SamplingParams& b) {
  return a.steps == b.steps && a.guidance == b.guidance && a.shift == b.shift && a.solver == b.solver &&
         a.frames == b.frames && a.width == b.width && a.height == b.height;
}
}  // namespace

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
  // The caches are kept from prompt to prompt, re-encoded in place: recorded steps read them by address.
  if (!c.kept) c.kept = std::make_unique<KeptDenoiseLoop>();
  KeptDenoiseLoop& kept = *c.kept;
  if (passes.cond) c.dit.encode_context_into(kept.cond, e.context->values, e.context->rows);
  if (passes.uncond) c.dit.encode_context_into(kept.uncond, e.negative->values, e.negative->rows);
  const wan::ContextCache* cond = passes.cond ? &kept.cond : nullptr;
  const wan::ContextCache* uncond = passes.uncond ? &kept.uncond : nullptr;
  be.synchronize();
  entry["context_seconds"] = seconds_since(t);

  const Shape shape = latent_shape(s);
  std::optional<parallel::SequenceParallel> sp;
  if (c.sp && c.sp->size() > 1)
    sp.emplace(*c.ulysses, *c.ring, shape[1] * (shape[2] / 2) * (shape[3] / 2),
               parallel::Overlap{c.job.ring_overlap, c.job.ulysses_overlap});
  // The loop is kept for the next prompt when it has no per-prompt parts (sequence parallel state) and restarted
  // when that prompt has the same settings; its recordings go with it otherwise.
  std::unique_ptr<DenoiseLoop> own_loop;
  const bool reusable = kept.loop && !sp && same_loop_settings(kept.loop->params(), s) && kept.loop->cfg() == c.cfg;
  if (reusable) {
    kept.loop->restart(prompt.seed, cond, uncond);
  } else {
    kept.loop.reset();
    auto made = std::make_unique<DenoiseLoop>(c.dit, s, prompt.seed, c.cfg, sp ? &*sp : nullptr, cond, uncond);
    (sp ? own_loop : kept.loop) = std::move(made);
  }
  DenoiseLoop& loop = sp ? *own_loop : *kept.loop;
  const Backend::RecordingStats recorded_before = be.recording_stats();
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
  const Backend::RecordingStats recorded = be.recording_stats();
  entry["step_recording"] = {
      {"mode", step_recording_name(loop.recording_in_effect())},
      {"reused_loop", reusable},
      {"recorded", recorded.recorded - recorded_before.recorded},
      {"replayed", recorded.replayed - recorded_before.replayed},
      {"record_ms", recorded.record_ms - recorded_before.record_ms},
      {"recordings_kept", recorded.kept}};
  entry["seconds"] = seconds_since(start);
  return entry;
}

}  // namespace ditrun

// Denoising the prompts of one replica: noise → N steps × {DiT forward(s), CFG, solver update} → final latent,
// saved to <output.dir>/<id>.latents.h5 and decoded by the VAE into <output.dir>/<id>.mp4. With cfg = 2 the two passes run on the two ranks of the cfg group and are
// exchanged once per step. With sequence parallel, each rank keeps its token shard of the latent for the whole
// loop (the sampler is element-wise) and the shards are gathered once, for the output.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/comm.h"
#include "launcher/embeddings.h"
#include "launcher/job.h"
#include "launcher/job_clock.h"
#include "launcher/progress.h"
#include "model/parallel/sequence_parallel.h"
#include "model/sampling/schedule.h"
#include "model/sampling/solver.h"
#include "model/wan/dit.h"
#include "model/wan/vae_decoder.h"

namespace ditrun {

// How denoising steps are recorded (Backend::run_recorded: CUDA graphs on the GPU), from $DITRUN_CUDA_GRAPHS:
// "0" nothing, "forward" each DiT forward alone, anything else (the default) whole steps — both CFG passes, the
// guidance combine and the solver update as one recording — where a step can be one (no sequence parallel, no
// cfg pair exchange), else each forward.
enum class StepRecording { none, forwards, whole_steps };
StepRecording step_recording_from_environment();
const char* step_recording_name(StepRecording recording);

// The latent shape [16, 1 + (frames − 1)/4, height/8, width/8] of a prompt (spec §2).
Shape latent_shape(const SamplingParams& s);

// The denoising loop of one prompt on this rank: the token shard of the latent, both CFG passes (split over a cfg
// pair, exchanged with one all-gather per step), the guidance combine and the solver update.
//
// A whole step recorded is keyed by its index (the solver's coefficients differ per step) and by this loop, which
// owns every buffer it touches: step i is run directly the first time, recorded the second and replayed after
// that. Within one prompt every step index comes once, so the recordings pay off when the loop is kept for the
// next prompts of the same settings (restart): prompt 2 records, prompt 3 on replay. The loop's recordings are
// dropped when it is destroyed.
class DenoiseLoop {
 public:
  // cond / uncond: the context caches this rank needs (null for a pass it does not run).
  DenoiseLoop(wan::DiT& dit, const SamplingParams& s, uint64_t seed, comm::Comm* cfg, parallel::SequenceParallel* sp,
              const wan::ContextCache* cond, const wan::ContextCache* uncond,
              StepRecording recording = step_recording_from_environment());
  ~DenoiseLoop();
  DenoiseLoop(const DenoiseLoop&) = delete;
  DenoiseLoop& operator=(const DenoiseLoop&) = delete;

  // Starts another latent with the same settings, on the same buffers: new noise from `seed`, these context
  // caches (the recorded steps replay only for the caches they were recorded with: the same tensors, e.g.
  // re-encoded in place by DiT::encode_context_into).
  void restart(uint64_t seed, const wan::ContextCache* cond, const wan::ContextCache* uncond);
  int steps() const { return schedule_.steps(); }
  void step(int i);
  // Whether step() runs as one recorded region (StepRecording::whole_steps, and a step that can be one).
  bool records_whole_steps() const;
  // What step() records: whole steps, each forward (forward_tokens), or nothing (off, or sequence parallel).
  StepRecording recording_in_effect() const;
  // The run_recorded key of step i as a whole (what it depends on beyond the backend's scratch position).
  std::string step_recording_key(int i) const;
  // The whole latent [C,F,H,W] on the host (collective over the sp group, which may have one rank).
  std::vector<float> gather_latent(comm::Comm& sp_group);
  // This rank's tokens of the latent [rows, 4·C] (f32, on the backend).
  const Tensor& latent_tokens() const { return x_; }
  double cfg_exchange_seconds() const { return cfg_seconds_; }
  const Shape& shape() const { return shape_; }
  const SamplingParams& params() const { return params_; }
  comm::Comm* cfg() const { return cfg_; }

 private:
  bool splits_cfg() const;
  // The guidance combine and the solver update of step i (device work only).
  void combine_and_update(int i);

  wan::DiT& dit_;
  SamplingParams params_;
  comm::Comm* cfg_;
  parallel::SequenceParallel* sp_;
  const wan::ContextCache* cond_;
  const wan::ContextCache* uncond_;
  StepRecording recording_;
  Shape shape_;
  wan::DiT::Grid grid_;
  int64_t rows_;
  sampling::Schedule schedule_;
  std::unique_ptr<sampling::Solver> solver_;
  Tensor x_, pair_, v_cond_, v_uncond_, v_;
  double cfg_seconds_ = 0;
  const uint64_t id_;  // names this loop's recordings; never reused in the process
};

// What denoise_prompt keeps from one prompt to the next: the context caches (re-encoded in place) and the loop
// (latent, velocity and solver buffers, restarted for a prompt with the same settings), so that its recorded steps
// replay for later prompts instead of being recorded again.
struct KeptDenoiseLoop {
  wan::ContextCache cond, uncond;
  std::unique_ptr<DenoiseLoop> loop;  // after the caches: destroyed before them
};

struct DenoiseContext {
  const Job& job;
  wan::DiT& dit;
  PromptEmbeddings& embeddings;  // a file, or the text role (launcher/text_role.h)
  comm::Comm* cfg;      // the cfg group (size 1 or 2)
  comm::Comm* sp;       // the sequence-parallel group (ring × ulysses) that shares one pass
  comm::Comm* ulysses;
  comm::Comm* ring;
  bool writes_output;   // this rank writes the latents of its replica
  wan::VaeDecoder* vae;  // on the writing rank: decodes the final latents into the video (shared VAE role)
  // With dedicated VAE ranks instead: the writing rank hands the final latents [16,T,h,w] over to them.
  std::function<void(const std::vector<float>& latents)> hand_over;
  Progress& progress;   // prints only on rank 0
  bool shows_steps;     // this rank's steps drive the progress bar
  const JobClock& clock;  // report.json's timelines
  std::unique_ptr<KeptDenoiseLoop> kept = std::make_unique<KeptDenoiseLoop>();
};

// The output files of a prompt: its latents and its video (<id>.mp4 for codec h264, <id>.y4m for y4m).
std::string latents_path(const Job& job, const PromptItem& prompt);
std::string video_path(const Job& job, const PromptItem& prompt);

// Which prompts of the job this run renders: those without their video. Every rank takes this list once, before
// any prompt is rendered, and keeps to it, so that a prompt's encoder, its DiT ranks and its VAE ranks agree.
std::vector<bool> prompts_to_render(const Job& job);
// The report entry of a prompt whose video exists.
nlohmann::json skipped_prompt_entry(const Job& job, const PromptItem& prompt);

// Denoises prompt `index` of the run's prompts and returns its report entry.
nlohmann::json denoise_prompt(DenoiseContext& c, size_t index, const PromptItem& prompt);

}  // namespace ditrun

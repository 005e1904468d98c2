// Denoising the prompts of one replica: noise → N steps × {DiT forward(s), CFG, solver update} → final latent,
// saved to <output.dir>/<id>.latents.h5. With cfg = 2 the two passes run on the two ranks of the cfg group and are
// exchanged once per step. With sequence parallel, each rank keeps its token shard of the latent for the whole
// loop (the sampler is element-wise) and the shards are gathered once, for the output.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/comm.h"
#include "launcher/embeddings.h"
#include "launcher/job.h"
#include "launcher/progress.h"
#include "model/wan/dit.h"

namespace ditrun {

struct DenoiseContext {
  const Job& job;
  wan::DiT& dit;
  const EmbeddingFile& embeddings;
  comm::Comm* cfg;      // the cfg group (size 1 or 2)
  comm::Comm* sp;       // the sequence-parallel group (ring × ulysses) that shares one pass
  comm::Comm* ulysses;
  comm::Comm* ring;
  bool writes_output;   // this rank writes the latents of its replica
  Progress& progress;   // prints only on rank 0
  bool shows_steps;     // this rank's steps drive the progress bar
};

// The latent shape [16, 1 + (frames − 1)/4, height/8, width/8] of a prompt (spec §2).
Shape latent_shape(const SamplingParams& s);

// The output file of a prompt.
std::string latents_path(const Job& job, const PromptItem& prompt);

// Denoises one prompt (or notes that its output exists) and returns its report entry.
nlohmann::json denoise_prompt(DenoiseContext& c, const PromptItem& prompt);

}  // namespace ditrun

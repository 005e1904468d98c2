// Who encodes each prompt's texts in `ditrun run` and who receives them (issue 6, "Scheduling"); pure logic over
// the plan, the same on every rank.
//  - Dedicated text role (parallel.text_ranks = T > 0): text rank k encodes prompts k, k + T, k + 2T, ... in order,
//    as far ahead as it gets, and sends each to the DiT ranks of the prompt's replica while they denoise the
//    prompts before it.
//  - Shared role (text_ranks = 0): the writing rank of each replica (mesh position [r,0,0,0,0]) encodes each of the
//    replica's prompts just before the replica denoises it, between prompts, and hands it to the replica's others.
// A DiT rank receives only what its CFG passes use: the context on ranks that run the conditional pass, the negative
// on ranks that run the unconditional one (launcher/cfg_passes.h).
// The job's default negative prompt is encoded once per job, by the first encoder, which gives it to the other
// encoders that need it before anything else. The first encoder alone writes the embedding cache file; the others
// send it their new entries at the end.
#pragma once
#include <cstddef>
#include <vector>

#include "launcher/job.h"
#include "partition/plan.h"

namespace ditrun {

struct PromptRoute {
  int replica = 0;
  int encoder = 0;                  // world rank that encodes the prompt's texts
  std::vector<int> context_ranks;   // DiT ranks that need its context (conditional pass), world ranks in mesh order
  std::vector<int> negative_ranks;  // DiT ranks that need its negative (unconditional pass); empty without guidance
  bool default_negative = false;    // its negative is the job's default negative prompt (and some rank needs it)
};

struct TextSchedule {
  bool dedicated = false;
  std::vector<int> encoders;         // world ranks that encode; encoders[0] owns the cache and the default negative
  std::vector<PromptRoute> prompts;  // by prompt index (of this run's prompts)

  // Message tags (MPI_COMM_WORLD): prompt i's context and negative; then, past every prompt's, the default
  // negative going to the other encoders and the cache entries going to the first.
  static int context_tag(size_t prompt) { return static_cast<int>(2 * prompt); }
  static int negative_tag(size_t prompt) { return static_cast<int>(2 * prompt + 1); }
  int default_negative_tag() const { return static_cast<int>(2 * prompts.size()); }
  int cache_entries_tag() const { return static_cast<int>(2 * prompts.size() + 1); }

  // The prompts `rank` encodes, in order, among those in `pending` (the prompts rendered by this run).
  std::vector<size_t> prompts_of(int rank, const std::vector<bool>& pending) const;
  // Whether encoder `rank` needs the default negative for one of its pending prompts.
  bool needs_default_negative(int rank, const std::vector<bool>& pending) const;
  bool is_encoder(int rank) const;
};

TextSchedule make_text_schedule(const partition::Plan& plan, const Job& job);

}  // namespace ditrun

// Which classifier-free-guidance passes a DiT rank runs for a prompt (spec §6.3): the conditional one always
// without guidance; with guidance ≠ 1 both, or, on a cfg pair, the conditional on cfg rank 0 and the
// unconditional on cfg rank 1. The denoising loop and the text role (who needs which embedding) both ask this.
#pragma once

#include "launcher/job.h"

namespace ditrun {

struct CfgPasses {
  bool cond = true;
  bool uncond = false;
};

inline CfgPasses cfg_passes(const SamplingParams& s, int cfg_size, int cfg_rank) {
  const bool use_cfg = s.guidance != 1.0;
  const bool split = use_cfg && cfg_size == 2;
  return {!split || cfg_rank == 0, use_cfg && (!split || cfg_rank == 1)};
}

}  // namespace ditrun

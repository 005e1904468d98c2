#include "launcher/text_schedule.h"

#include <algorithm>

#include "launcher/cfg_passes.h"
#include "partition/mesh.h"

namespace ditrun {

TextSchedule make_text_schedule(const partition::Plan& plan, const Job& job) {
  const partition::Layout& l = plan.layout();
  const auto& rank_of_mesh = plan.placement().rank_of_mesh;
  const int per_replica = l.ranks_per_replica();
  TextSchedule s;
  s.dedicated = l.dedicated_text();
  if (s.dedicated) {
    s.encoders = plan.groups(partition::GroupKind::text).at(0).ranks;
  } else {
    for (int r = 0; r < l.replicas; ++r) s.encoders.push_back(rank_of_mesh.at(r * per_replica));  // [r,0,0,0,0]
  }
  const int encoders = static_cast<int>(s.encoders.size());
  for (size_t i = 0; i < job.prompts.size(); ++i) {
    const PromptItem& p = job.prompts[i];
    PromptRoute route;
    route.replica = static_cast<int>(i % static_cast<size_t>(l.replicas));
    route.encoder = s.dedicated ? s.encoders[i % static_cast<size_t>(encoders)] : s.encoders[route.replica];
    for (int m = route.replica * per_replica; m < (route.replica + 1) * per_replica; ++m) {
      const CfgPasses passes = cfg_passes(p.sampling, l.cfg, partition::mesh_coord(l, m).cfg);
      if (passes.cond) route.context_ranks.push_back(rank_of_mesh[m]);
      if (passes.uncond) route.negative_ranks.push_back(rank_of_mesh[m]);
    }
    route.default_negative = !route.negative_ranks.empty() && p.negative_prompt == job.negative_prompt;
    s.prompts.push_back(std::move(route));
  }
  return s;
}

std::vector<size_t> TextSchedule::prompts_of(int rank, const std::vector<bool>& pending) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < prompts.size(); ++i)
    if (pending.at(i) && prompts[i].encoder == rank) out.push_back(i);
  return out;
}

bool TextSchedule::needs_default_negative(int rank, const std::vector<bool>& pending) const {
  for (size_t i : prompts_of(rank, pending))
    if (prompts[i].default_negative) return true;
  return false;
}

bool TextSchedule::is_encoder(int rank) const {
  return std::find(encoders.begin(), encoders.end(), rank) != encoders.end();
}

}  // namespace ditrun

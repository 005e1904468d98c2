#include "partition/plan_text.h"

#include <algorithm>
#include <sstream>

namespace ditrun::partition {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ",") + i;
  return s;
}

}  // namespace

std::string render_plan(const Plan& plan, bool per_rank) {
  const Layout& l = plan.layout();
  const Topology& t = plan.topology();
  std::ostringstream out;
  size_t max_per_host = 0;
  for (const auto& rs : t.ranks_by_host()) max_per_host = std::max(max_per_host, rs.size());
  out << "ranks: " << t.world_size() << " on " << t.hosts().size() << " host" << (t.hosts().size() == 1 ? "" : "s")
      << " (up to " << max_per_host << " per host)\n";
  out << "layout: " << l.describe() << "\n";
  out << "mesh: [replica " << l.replicas << "][cfg " << l.cfg << "][pipefusion " << l.pipefusion << "][ring "
      << l.ring << "][ulysses " << l.ulysses << "], ulysses fastest\n";
  for (const auto& w : plan.warnings()) out << "warning: " << w << "\n";

  for (GroupKind kind : kAllGroupKinds) {
    const auto& groups = plan.groups(kind);
    if (groups.empty()) continue;
    const size_t size = groups.front().ranks.size();
    const bool same_size = std::all_of(groups.begin(), groups.end(),
                                       [&](const Group& g) { return g.ranks.size() == size; });
    out << "\n" << group_kind_name(kind) << " groups: " << groups.size();
    if (same_size) out << " × " << size << " rank" << (size == 1 ? "" : "s");
    if (kind == GroupKind::vae || kind == GroupKind::text) {
      const bool dedicated = kind == GroupKind::vae ? l.dedicated_vae() : l.dedicated_text();
      out << (dedicated ? " (dedicated ranks)" : " (shared: each replica's DiT ranks)");
    }
    if (same_size && size == 1) {  // one group per rank: nothing to list
      out << ", one per rank\n";
      continue;
    }
    out << (plan.within_hosts(kind) ? ", each within one host" : ", some across hosts") << "\n";
    for (const Group& g : groups)
      out << "  " << group_kind_name(kind) << "[" << g.index << "]  ranks " << format_ranks(g.ranks) << "  hosts "
          << join(plan.hosts_of(g)) << "\n";
  }

  if (per_rank) {
    out << "\nrank  host  roles\n";
    for (int r = 0; r < t.world_size(); ++r) out << r << "  " << t.host(r) << "  " << plan.roles(r).describe() << "\n";
  }
  return out.str();
}

}  // namespace ditrun::partition

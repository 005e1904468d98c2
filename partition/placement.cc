#include "partition/placement.h"

#include <algorithm>
#include <set>

#include "partition/mesh.h"

namespace ditrun::partition {

Placement place(const Layout& layout, const Topology& topology) {
  if (layout.world_size() != topology.world_size())
    throw LayoutError("parallel", "the layout needs " + std::to_string(layout.world_size()) +
                                      " ranks but the topology has " + std::to_string(topology.world_size()));
  const int u = layout.ulysses;
  const int groups = layout.dit_ranks() / u;

  // Slots per host in local-rank order; a Ulysses group takes u slots of one host while the host has them.
  std::vector<std::vector<int>> free_slots = topology.ranks_by_host();
  std::vector<std::vector<int>> group_ranks;
  group_ranks.reserve(groups);
  for (auto& host_slots : free_slots) {
    size_t taken = 0;
    while (static_cast<int>(group_ranks.size()) < groups && host_slots.size() - taken >= static_cast<size_t>(u)) {
      group_ranks.emplace_back(host_slots.begin() + taken, host_slots.begin() + taken + u);
      taken += u;
    }
    host_slots.erase(host_slots.begin(), host_slots.begin() + taken);
  }
  // What is left, host by host: groups that could not fit one host, then the dedicated roles.
  std::vector<int> left;
  for (const auto& host_slots : free_slots) left.insert(left.end(), host_slots.begin(), host_slots.end());
  size_t next = 0;
  Placement p;
  while (static_cast<int>(group_ranks.size()) < groups) {
    std::vector<int> g(left.begin() + next, left.begin() + next + u);
    next += u;
    std::set<std::string> hosts;
    for (int r : g) hosts.insert(topology.host(r));
    std::string names;
    for (const auto& h : hosts) names += (names.empty() ? "" : ",") + h;
    p.warnings.push_back("ulysses group " + std::to_string(group_ranks.size()) + " spans hosts " + names +
                         ": the layout forces Ulysses all-to-all across hosts (ulysses " + std::to_string(u) +
                         " does not fit the free GPUs of one host)");
    group_ranks.push_back(std::move(g));
  }
  p.vae_ranks.assign(left.begin() + next, left.begin() + next + layout.vae_ranks);
  next += layout.vae_ranks;
  p.text_ranks.assign(left.begin() + next, left.begin() + next + layout.text_ranks);
  next += layout.text_ranks;

  p.rank_of_mesh.resize(layout.dit_ranks());
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < u; ++i) p.rank_of_mesh[g * u + i] = group_ranks[g][i];
  return p;
}

}  // namespace ditrun::partition

#include "partition/topology.h"

#include <cstdio>
#include <map>

#include "partition/layout.h"

namespace ditrun::partition {

Topology::Topology(std::vector<std::string> host_of_rank) : host_of_rank_(std::move(host_of_rank)) {
  if (host_of_rank_.empty()) throw LayoutError("world", "a topology needs at least one rank");
  std::map<std::string, int> index;
  host_index_of_rank_.reserve(host_of_rank_.size());
  for (int r = 0; r < world_size(); ++r) {
    auto [it, added] = index.emplace(host_of_rank_[r], static_cast<int>(hosts_.size()));
    if (added) {
      hosts_.push_back(host_of_rank_[r]);
      ranks_by_host_.emplace_back();
    }
    ranks_by_host_[it->second].push_back(r);
    host_index_of_rank_.push_back(it->second);
  }
}

Topology Topology::uniform(int gpus, int gpus_per_host, LaunchOrder order) {
  if (gpus < 1) throw LayoutError("gpus", "--gpus must be at least 1, got " + std::to_string(gpus));
  if (gpus_per_host < 1)
    throw LayoutError("gpus-per-node", "--gpus-per-node must be at least 1, got " + std::to_string(gpus_per_host));
  const int hosts = (gpus + gpus_per_host - 1) / gpus_per_host;
  std::vector<std::string> host_of_rank(gpus);
  std::vector<int> filled(hosts, 0);
  for (int r = 0, next = 0; r < gpus; ++r) {
    int h = r / gpus_per_host;
    if (order == LaunchOrder::cyclic) {  // deal round-robin over hosts that still have a free slot
      while (filled[next % hosts] >= gpus_per_host) ++next;
      h = next++ % hosts;
    }
    ++filled[h];
    char name[32];
    std::snprintf(name, sizeof name, "node%03d", h);
    host_of_rank[r] = name;
  }
  return Topology(std::move(host_of_rank));
}

}  // namespace ditrun::partition

// The plan of a job: layout + placement, every rank's roles and every communicator group, built in one place.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "partition/layout.h"
#include "partition/mesh.h"
#include "partition/placement.h"
#include "partition/topology.h"

namespace ditrun::partition {

// Every kind of group a rank may need a communicator for. Each rank is in at most one group of each kind.
enum class GroupKind {
  world,       // all ranks
  dit,         // all DiT ranks (every replica)
  instance,    // the DiT ranks of one replica: they render one prompt together (cfg × pipefusion × ring × ulysses)
  replica,     // the same mesh position in every replica (data-parallel peers)
  cfg,         // the conditional / unconditional pair
  pipefusion,  // the pipeline stages over layer ranges
  sp,          // the sequence-parallel ranks (ring × ulysses) of one cfg half and stage
  ring,        // ring-attention peers (K/V blocks rotate around them)
  ulysses,     // all-to-all peers (scatter heads / gather sequence)
  vae,         // ranks that decode together: the dedicated VAE ranks, or each instance when shared
  text,        // ranks that encode prompts together: the dedicated text ranks, or each instance when shared
};
inline constexpr std::array<GroupKind, 11> kAllGroupKinds = {
    GroupKind::world, GroupKind::dit,  GroupKind::instance, GroupKind::replica, GroupKind::cfg, GroupKind::pipefusion,
    GroupKind::sp,    GroupKind::ring, GroupKind::ulysses,  GroupKind::vae,     GroupKind::text};
const char* group_kind_name(GroupKind kind);

struct Group {
  GroupKind kind;
  int index = 0;           // the group's number among the groups of its kind
  std::vector<int> ranks;  // world ranks in group order: position i is the group rank i
};

struct RankRoles {
  std::optional<MeshCoord> dit;  // set on DiT ranks
  bool vae = false;              // decodes (shared or dedicated)
  bool text = false;             // encodes text (shared or dedicated)
  std::string describe() const;  // "dit[r0 c1 p0 s2 u3] vae text"
};

class Plan {
 public:
  Plan(const Layout& layout, const Topology& topology);

  const Layout& layout() const { return layout_; }
  const Topology& topology() const { return topology_; }
  const Placement& placement() const { return placement_; }
  const std::vector<std::string>& warnings() const { return placement_.warnings; }
  const std::vector<Group>& groups(GroupKind kind) const { return groups_[static_cast<size_t>(kind)]; }
  const RankRoles& roles(int rank) const { return roles_.at(rank); }
  // The group of `kind` that holds `rank`, or nullptr when the rank takes no part in that kind.
  const Group* group_of(GroupKind kind, int rank) const;
  // Distinct hosts of a group, in rank order.
  std::vector<std::string> hosts_of(const Group& group) const;
  // True when every group of `kind` lies inside one host.
  bool within_hosts(GroupKind kind) const;

 private:
  void add(GroupKind kind, std::vector<int> ranks);

  Layout layout_;
  Topology topology_;
  Placement placement_;
  std::array<std::vector<Group>, kAllGroupKinds.size()> groups_;
  std::vector<std::array<int, kAllGroupKinds.size()>> group_index_of_rank_;  // -1 = none
  std::vector<RankRoles> roles_;
};

// Validates the request against the topology and builds the plan. Throws LayoutError.
Plan make_plan(const LayoutRequest& request, const Topology& topology);

// "0-7", "0,8,16,24", "0-3,8-11": ranks in group order, runs of consecutive ranks folded.
std::string format_ranks(const std::vector<int>& ranks);

}  // namespace ditrun::partition

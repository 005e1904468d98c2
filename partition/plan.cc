#include "partition/plan.h"

#include <algorithm>
#include <numeric>
#include <tuple>
#include <utility>

namespace ditrun::partition {

const char* group_kind_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::world: return "world";
    case GroupKind::dit: return "dit";
    case GroupKind::instance: return "instance";
    case GroupKind::replica: return "replica";
    case GroupKind::cfg: return "cfg";
    case GroupKind::pipefusion: return "pipefusion";
    case GroupKind::sp: return "sp";
    case GroupKind::ring: return "ring";
    case GroupKind::ulysses: return "ulysses";
    case GroupKind::vae: return "vae";
    case GroupKind::text: return "text";
  }
  return "?";
}

std::string RankRoles::describe() const {
  std::string s;
  if (dit)
    s = "dit[r" + std::to_string(dit->replica) + " c" + std::to_string(dit->cfg) + " p" +
        std::to_string(dit->pipefusion) + " s" + std::to_string(dit->ring) + " u" + std::to_string(dit->ulysses) + "]";
  if (vae) s += s.empty() ? "vae" : " vae";
  if (text) s += s.empty() ? "text" : " text";
  return s;
}

Plan::Plan(const Layout& layout, const Topology& topology)
    : layout_(layout), topology_(topology), placement_(place(layout, topology)) {
  const int world = topology.world_size();
  group_index_of_rank_.assign(world, {});
  for (auto& row : group_index_of_rank_) row.fill(-1);
  roles_.assign(world, {});

  const Layout& l = layout_;
  for (int m = 0; m < l.dit_ranks(); ++m) roles_[placement_.rank_of_mesh[m]].dit = mesh_coord(l, m);

  // Groups along mesh axes: all positions that differ only in the listed axes, in mesh order.
  auto mesh_groups = [&](GroupKind kind, auto same_group, auto key_less) {
    std::vector<int> order(l.dit_ranks());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return key_less(mesh_coord(l, a), mesh_coord(l, b));
    });
    std::vector<int> ranks;
    MeshCoord first{};
    for (int m : order) {
      MeshCoord c = mesh_coord(l, m);
      if (!ranks.empty() && !same_group(first, c)) add(kind, std::exchange(ranks, {}));
      if (ranks.empty()) first = c;
      ranks.push_back(placement_.rank_of_mesh[m]);
    }
    if (!ranks.empty()) add(kind, std::move(ranks));
  };
  // A group is identified by the coordinates it keeps fixed; sorting by those (stable in mesh order) gathers it.
  auto by = [](auto project) {
    return std::pair{[project](const MeshCoord& a, const MeshCoord& b) { return project(a) == project(b); },
                     [project](const MeshCoord& a, const MeshCoord& b) { return project(a) < project(b); }};
  };
  auto add_axis = [&](GroupKind kind, auto project) {
    auto [same, less] = by(project);
    mesh_groups(kind, same, less);
  };

  std::vector<int> all(world);
  std::iota(all.begin(), all.end(), 0);
  add(GroupKind::world, all);
  add(GroupKind::dit, std::vector<int>(placement_.rank_of_mesh.begin(), placement_.rank_of_mesh.end()));
  add_axis(GroupKind::instance, [](const MeshCoord& c) { return std::tuple{c.replica}; });
  add_axis(GroupKind::replica, [](const MeshCoord& c) { return std::tuple{c.cfg, c.pipefusion, c.ring, c.ulysses}; });
  add_axis(GroupKind::cfg, [](const MeshCoord& c) { return std::tuple{c.replica, c.pipefusion, c.ring, c.ulysses}; });
  add_axis(GroupKind::pipefusion, [](const MeshCoord& c) { return std::tuple{c.replica, c.cfg, c.ring, c.ulysses}; });
  add_axis(GroupKind::sp, [](const MeshCoord& c) { return std::tuple{c.replica, c.cfg, c.pipefusion}; });
  add_axis(GroupKind::ring, [](const MeshCoord& c) { return std::tuple{c.replica, c.cfg, c.pipefusion, c.ulysses}; });
  add_axis(GroupKind::ulysses, [](const MeshCoord& c) { return std::tuple{c.replica, c.cfg, c.pipefusion, c.ring}; });

  // Roles: dedicated ranks form one group each; shared roles are taken by each replica's DiT ranks.
  if (l.dedicated_vae()) {
    add(GroupKind::vae, placement_.vae_ranks);
  } else {
    for (const Group& g : groups(GroupKind::instance)) add(GroupKind::vae, g.ranks);
  }
  if (l.dedicated_text()) {
    add(GroupKind::text, placement_.text_ranks);
  } else {
    for (const Group& g : groups(GroupKind::instance)) add(GroupKind::text, g.ranks);
  }
  for (int r = 0; r < world; ++r) {
    roles_[r].vae = group_of(GroupKind::vae, r) != nullptr;
    roles_[r].text = group_of(GroupKind::text, r) != nullptr;
  }
}

void Plan::add(GroupKind kind, std::vector<int> ranks) {
  auto& list = groups_[static_cast<size_t>(kind)];
  const int index = static_cast<int>(list.size());
  for (int r : ranks) group_index_of_rank_[r][static_cast<size_t>(kind)] = index;
  list.push_back(Group{kind, index, std::move(ranks)});
}

const Group* Plan::group_of(GroupKind kind, int rank) const {
  const int i = group_index_of_rank_.at(rank)[static_cast<size_t>(kind)];
  return i < 0 ? nullptr : &groups(kind)[i];
}

std::vector<std::string> Plan::hosts_of(const Group& group) const {
  std::vector<std::string> hosts;
  for (int r : group.ranks) {
    const std::string& h = topology_.host(r);
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  }
  return hosts;
}

bool Plan::within_hosts(GroupKind kind) const {
  for (const Group& g : groups(kind))
    if (hosts_of(g).size() > 1) return false;
  return true;
}

Plan make_plan(const LayoutRequest& request, const Topology& topology) {
  return Plan(resolve_layout(request, topology.world_size()), topology);
}

std::string format_ranks(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += std::to_string(ranks[i]);
    if (j >= i + 2) s += "-" + std::to_string(ranks[j]);
    else if (j == i + 1) s += "," + std::to_string(ranks[j]);
    i = j + 1;
  }
  return s;
}

}  // namespace ditrun::partition

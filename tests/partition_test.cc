// Partition: layout validation, placement by topology, and the groups of every kind, for 1 to 128 ranks.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "partition/plan.h"
#include "partition/plan_text.h"

using namespace ditrun::partition;

namespace {

LayoutRequest request(int cfg, int pipefusion, int ring, int ulysses, int replicas = 0, int vae = 0, int text = 0) {
  LayoutRequest r;
  r.cfg = cfg;
  r.pipefusion = pipefusion;
  r.ring = ring;
  r.ulysses = ulysses;
  r.replicas = replicas;
  r.vae_ranks = vae;
  r.text_ranks = text;
  return r;
}

// Structural invariants every plan must satisfy, whatever the shape.
void check_invariants(const Plan& plan) {
  const Layout& l = plan.layout();
  const int world = plan.topology().world_size();
  ASSERT_EQ(l.world_size(), world);

  // Every rank has exactly one role set; DiT mesh positions are a bijection onto DiT ranks.
  std::set<int> dit_ranks(plan.placement().rank_of_mesh.begin(), plan.placement().rank_of_mesh.end());
  EXPECT_EQ(static_cast<int>(dit_ranks.size()), l.dit_ranks());
  std::set<int> all = dit_ranks;
  for (int r : plan.placement().vae_ranks) EXPECT_TRUE(all.insert(r).second) << "rank " << r << " twice";
  for (int r : plan.placement().text_ranks) EXPECT_TRUE(all.insert(r).second) << "rank " << r << " twice";
  EXPECT_EQ(static_cast<int>(all.size()), world);
  for (int m = 0; m < l.dit_ranks(); ++m) {
    const int r = plan.placement().rank_of_mesh[m];
    ASSERT_TRUE(plan.roles(r).dit.has_value());
    EXPECT_EQ(mesh_index(l, *plan.roles(r).dit), m);
  }

  // Group sizes and counts per kind; each rank in at most one group of a kind; positions follow the axis.
  const std::map<GroupKind, std::pair<int, int>> shape = {
      {GroupKind::world, {1, world}},
      {GroupKind::dit, {1, l.dit_ranks()}},
      {GroupKind::instance, {l.replicas, l.ranks_per_replica()}},
      {GroupKind::replica, {l.ranks_per_replica(), l.replicas}},
      {GroupKind::cfg, {l.dit_ranks() / l.cfg, l.cfg}},
      {GroupKind::pipefusion, {l.dit_ranks() / l.pipefusion, l.pipefusion}},
      {GroupKind::sp, {l.dit_ranks() / l.sequence_parallel(), l.sequence_parallel()}},
      {GroupKind::ring, {l.dit_ranks() / l.ring, l.ring}},
      {GroupKind::ulysses, {l.dit_ranks() / l.ulysses, l.ulysses}},
  };
  for (const auto& [kind, expect] : shape) {
    const auto& groups = plan.groups(kind);
    ASSERT_EQ(static_cast<int>(groups.size()), expect.first) << group_kind_name(kind);
    std::set<int> seen;
    for (const Group& g : groups) {
      ASSERT_EQ(static_cast<int>(g.ranks.size()), expect.second) << group_kind_name(kind);
      for (size_t i = 0; i < g.ranks.size(); ++i) {
        EXPECT_TRUE(seen.insert(g.ranks[i]).second);
        EXPECT_EQ(plan.group_of(kind, g.ranks[i]), &g);
        if (kind == GroupKind::world || kind == GroupKind::dit) continue;
        const MeshCoord c = *plan.roles(g.ranks[i]).dit;
        const MeshCoord c0 = *plan.roles(g.ranks[0]).dit;
        // The group's own axis gives the position; every other coordinate is the same as the first member's.
        switch (kind) {
          case GroupKind::ulysses:
            EXPECT_EQ(c.ulysses, static_cast<int>(i));
            EXPECT_TRUE(c.replica == c0.replica && c.cfg == c0.cfg && c.pipefusion == c0.pipefusion && c.ring == c0.ring);
            break;
          case GroupKind::ring:
            EXPECT_EQ(c.ring, static_cast<int>(i));
            EXPECT_TRUE(c.replica == c0.replica && c.cfg == c0.cfg && c.pipefusion == c0.pipefusion &&
                        c.ulysses == c0.ulysses);
            break;
          case GroupKind::cfg:
            EXPECT_EQ(c.cfg, static_cast<int>(i));
            EXPECT_TRUE(c.replica == c0.replica && c.pipefusion == c0.pipefusion && c.ring == c0.ring &&
                        c.ulysses == c0.ulysses);
            break;
          case GroupKind::pipefusion:
            EXPECT_EQ(c.pipefusion, static_cast<int>(i));
            break;
          case GroupKind::replica:
            EXPECT_EQ(c.replica, static_cast<int>(i));
            break;
          case GroupKind::sp:
            EXPECT_EQ(c.ring * l.ulysses + c.ulysses, static_cast<int>(i));
            EXPECT_TRUE(c.replica == c0.replica && c.cfg == c0.cfg && c.pipefusion == c0.pipefusion);
            break;
          case GroupKind::instance:
            EXPECT_EQ(c.replica, c0.replica);
            break;
          default:
            break;
        }
      }
    }
  }
  // Role groups: dedicated ranks form one group; shared roles are the instances.
  if (l.dedicated_vae()) {
    ASSERT_EQ(plan.groups(GroupKind::vae).size(), 1u);
    EXPECT_EQ(plan.groups(GroupKind::vae)[0].ranks, plan.placement().vae_ranks);
  } else {
    ASSERT_EQ(plan.groups(GroupKind::vae).size(), plan.groups(GroupKind::instance).size());
  }
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(plan.roles(r).vae, plan.group_of(GroupKind::vae, r) != nullptr);
    EXPECT_TRUE(plan.roles(r).dit || plan.roles(r).vae || plan.roles(r).text) << "rank " << r << " has no role";
  }
}

}  // namespace

TEST(Layout, FillsReplicasFromTheWorld) {
  const Layout l = resolve_layout(request(2, 1, 2, 4), 64);
  EXPECT_EQ(l.replicas, 4);
  EXPECT_EQ(l.dit_ranks(), 64);
  const Layout with_roles = resolve_layout(request(2, 1, 1, 4, 0, 4, 2), 30);
  EXPECT_EQ(with_roles.replicas, 3);
  EXPECT_EQ(with_roles.world_size(), 30);
}

TEST(Layout, RejectsBadLayoutsWithTheKey) {
  auto key_of = [](const LayoutRequest& r, int world) -> std::string {
    try {
      resolve_layout(r, world);
    } catch (const LayoutError& e) {
      EXPECT_NE(std::string(e.what()).find_first_not_of(' '), std::string::npos);
      return e.key();
    }
    return "no error";
  };
  EXPECT_EQ(key_of(request(3, 1, 1, 1), 3), "parallel.cfg");
  EXPECT_EQ(key_of(request(0, 1, 1, 1), 4), "parallel.cfg");
  EXPECT_EQ(key_of(request(1, 1, 1, 0), 4), "parallel.ulysses");
  EXPECT_EQ(key_of(request(1, 1, -2, 1), 4), "parallel.ring");
  EXPECT_EQ(key_of(request(1, 0, 1, 1), 4), "parallel.pipefusion");
  EXPECT_EQ(key_of(request(1, 1, 1, 1, -1), 4), "parallel.replicas");
  EXPECT_EQ(key_of(request(1, 1, 1, 1, 0, -1), 4), "parallel.vae_ranks");
  EXPECT_EQ(key_of(request(1, 1, 1, 1, 0, 0, -1), 4), "parallel.text_ranks");
  EXPECT_EQ(key_of(request(2, 1, 4, 8), 48), "parallel");          // 48 not a multiple of 64
  EXPECT_EQ(key_of(request(2, 1, 1, 2, 3), 8), "parallel");        // 12 ranks asked, 8 given
  EXPECT_EQ(key_of(request(1, 1, 1, 1, 0, 3, 1), 4), "parallel.vae_ranks");  // no DiT rank left
  EXPECT_EQ(key_of(request(1, 1, 1, 1, 0, 9), 4), "parallel.vae_ranks");     // more role ranks than ranks
  try {
    resolve_layout(request(2, 1, 1, 2, 3), 8);
  } catch (const LayoutError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 12 ranks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("has 8"), std::string::npos) << e.what();
  }
}

TEST(Topology, BlockAndCyclicLaunches) {
  const Topology block = Topology::uniform(16, 8, LaunchOrder::block);
  EXPECT_EQ(block.hosts().size(), 2u);
  EXPECT_EQ(block.host(7), "node000");
  EXPECT_EQ(block.host(8), "node001");
  const Topology cyclic = Topology::uniform(16, 8, LaunchOrder::cyclic);
  EXPECT_EQ(cyclic.host(0), "node000");
  EXPECT_EQ(cyclic.host(1), "node001");
  EXPECT_EQ(cyclic.host(2), "node000");
  EXPECT_EQ(cyclic.ranks_by_host()[1], (std::vector<int>{1, 3, 5, 7, 9, 11, 13, 15}));
  const Topology odd = Topology::uniform(13, 4, LaunchOrder::cyclic);  // last host partly filled
  EXPECT_EQ(odd.hosts().size(), 4u);
  size_t total = 0;
  for (const auto& h : odd.ranks_by_host()) {
    EXPECT_LE(h.size(), 4u);
    total += h.size();
  }
  EXPECT_EQ(total, 13u);
}

TEST(Placement, UlyssesGroupsStayInsideAHostWhateverTheLaunchOrder) {
  for (auto order : {LaunchOrder::block, LaunchOrder::cyclic}) {
    const Plan plan = make_plan(request(2, 1, 4, 8), Topology::uniform(64, 8, order));
    check_invariants(plan);
    EXPECT_TRUE(plan.within_hosts(GroupKind::ulysses));
    EXPECT_TRUE(plan.warnings().empty());
    // Ring groups cross the hosts, one member per host.
    for (const Group& g : plan.groups(GroupKind::ring)) EXPECT_EQ(plan.hosts_of(g).size(), 4u);
  }
  // Round-robin over 2 hosts: rank 0,2,4,.. on node000. Ulysses 4 must take ranks of one host.
  const Plan rr = make_plan(request(2, 1, 1, 4), Topology::uniform(8, 4, LaunchOrder::cyclic));
  check_invariants(rr);
  EXPECT_EQ(rr.groups(GroupKind::ulysses)[0].ranks, (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(rr.groups(GroupKind::ulysses)[1].ranks, (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(rr.groups(GroupKind::cfg)[0].ranks, (std::vector<int>{0, 1}));
}

TEST(Placement, WarnsWhenUlyssesMustCrossHosts) {
  const Plan plan = make_plan(request(1, 1, 1, 6), Topology::uniform(12, 4, LaunchOrder::block));
  check_invariants(plan);
  EXPECT_FALSE(plan.within_hosts(GroupKind::ulysses));
  ASSERT_EQ(plan.warnings().size(), 2u);
  EXPECT_NE(plan.warnings()[0].find("spans hosts node000,node001"), std::string::npos) << plan.warnings()[0];
  EXPECT_NE(render_plan(plan, false).find("warning: ulysses group"), std::string::npos);
}

TEST(Placement, DedicatedRolesTakeTheSlotsUlyssesLeaves) {
  // 2 hosts × 8: cfg 2 × ulysses 3 × ring 2 = 12 DiT ranks + 4 VAE ranks. Each host holds two whole Ulysses groups.
  const Plan plan = make_plan(request(2, 1, 2, 3, 0, 4), Topology::uniform(16, 8, LaunchOrder::block));
  check_invariants(plan);
  EXPECT_TRUE(plan.within_hosts(GroupKind::ulysses));
  EXPECT_EQ(plan.placement().vae_ranks, (std::vector<int>{6, 7, 14, 15}));
  for (int r : plan.placement().vae_ranks) {
    EXPECT_FALSE(plan.roles(r).dit.has_value());
    EXPECT_TRUE(plan.roles(r).vae);
    EXPECT_FALSE(plan.roles(r).text);
  }
  // Shared text role: every DiT rank encodes with its instance.
  EXPECT_EQ(plan.groups(GroupKind::text).size(), 1u);
  EXPECT_EQ(plan.groups(GroupKind::text)[0].ranks.size(), 12u);
}

TEST(Plan, ExampleFromTheIssue) {
  const Plan plan = make_plan(request(2, 1, 4, 8), Topology::uniform(64, 8, LaunchOrder::block));
  EXPECT_EQ(plan.layout().replicas, 1);
  EXPECT_EQ(plan.groups(GroupKind::ulysses)[1].ranks, (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(plan.groups(GroupKind::ring)[0].ranks, (std::vector<int>{0, 8, 16, 24}));
  EXPECT_EQ(plan.groups(GroupKind::cfg)[0].ranks, (std::vector<int>{0, 32}));
  EXPECT_EQ(plan.groups(GroupKind::sp)[1].ranks.front(), 32);
  const std::string text = render_plan(plan, true);
  EXPECT_NE(text.find("ulysses groups: 8 × 8 ranks, each within one host"), std::string::npos) << text;
  EXPECT_NE(text.find("ring[0]  ranks 0,8,16,24  hosts node000,node001,node002,node003"), std::string::npos);
  EXPECT_NE(text.find("63  node007  dit[r0 c1 p0 s3 u7] vae text"), std::string::npos);
}

TEST(Plan, EveryShapeFrom1To128Ranks) {
  int plans = 0;
  for (int world = 1; world <= 128; ++world) {
    for (int per_host : {1, 2, 4, 8}) {
      for (auto order : {LaunchOrder::block, LaunchOrder::cyclic}) {
        const Topology topo = Topology::uniform(world, per_host, order);
        for (int cfg : {1, 2})
          for (int pf : {1, 2})
            for (int ring : {1, 2, 3, 4})
              for (int ul : {1, 2, 3, 4, 6, 8})
                for (int vae : {0, 1}) {
                  const int per_replica = cfg * pf * ring * ul;
                  if ((world - vae) < per_replica || (world - vae) % per_replica != 0) continue;
                  const Plan plan = make_plan(request(cfg, pf, ring, ul, 0, vae), topo);
                  check_invariants(plan);
                  if (::testing::Test::HasFatalFailure()) return;
                  // Ulysses stays in a host whenever each host's GPUs hold whole groups.
                  if (per_host % ul == 0 && world % per_host == 0 && vae == 0)
                    EXPECT_TRUE(plan.within_hosts(GroupKind::ulysses)) << world << " " << per_host << " u" << ul;
                  ++plans;
                }
      }
    }
  }
  EXPECT_GT(plans, 5000);
}

TEST(Plan, FormatRanks) {
  EXPECT_EQ(format_ranks({0, 1, 2, 3}), "0-3");
  EXPECT_EQ(format_ranks({0, 8, 16, 24}), "0,8,16,24");
  EXPECT_EQ(format_ranks({0, 1, 4, 5, 6, 9}), "0,1,4-6,9");
  EXPECT_EQ(format_ranks({5}), "5");
}

// Who encodes which prompt in `ditrun run` and who receives it (launcher/text_schedule.h): dedicated text ranks take
// prompts in turn, the shared role gives each replica's prompts to its writing rank, and each DiT rank receives only
// what its CFG passes use.
#include <gtest/gtest.h>

#include <set>

#include "launcher/text_schedule.h"

namespace ditrun {
namespace {

Job job_with(int prompts, double guidance) {
  Job job;
  job.negative_prompt = "low quality";
  for (int i = 0; i < prompts; ++i) {
    PromptItem p;
    p.id = std::to_string(i);  // (not "p" + ...: GCC 12 warns wrongly about that, -Wrestrict)
    p.prompt = "a prompt numbered " + p.id;
    p.negative_prompt = job.negative_prompt;
    p.sampling.guidance = guidance;
    job.prompts.push_back(p);
  }
  return job;
}

partition::Plan plan_of(partition::LayoutRequest request, int ranks) {
  return partition::make_plan(request, partition::Topology(std::vector<std::string>(ranks, "node0")));
}

TEST(TextSchedule, DedicatedTextRanksTakePromptsInTurnAndSendToTheReplicasCfgHalves) {
  // 2 replicas × cfg 2 = DiT ranks 0-3, text ranks 4 and 5.
  const auto plan = plan_of({.replicas = 2, .cfg = 2, .text_ranks = 2}, 6);
  Job job = job_with(5, 5.0);
  job.prompts[3].negative_prompt = "blurry";
  const TextSchedule s = make_text_schedule(plan, job);
  EXPECT_TRUE(s.dedicated);
  EXPECT_EQ(s.encoders, (std::vector<int>{4, 5}));
  ASSERT_EQ(s.prompts.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const PromptRoute& r = s.prompts[i];
    EXPECT_EQ(r.replica, static_cast<int>(i % 2)) << i;
    EXPECT_EQ(r.encoder, i % 2 == 0 ? 4 : 5) << i;
    // cfg rank 0 of the replica runs the conditional pass, cfg rank 1 the unconditional one.
    EXPECT_EQ(r.context_ranks, (std::vector<int>{2 * r.replica})) << i;
    EXPECT_EQ(r.negative_ranks, (std::vector<int>{2 * r.replica + 1})) << i;
    EXPECT_EQ(r.default_negative, i != 3) << i;
  }
  const std::vector<bool> all(5, true);
  EXPECT_EQ(s.prompts_of(4, all), (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(s.prompts_of(5, all), (std::vector<size_t>{1, 3}));
  EXPECT_EQ(s.prompts_of(0, all), (std::vector<size_t>{}));
  // Prompts with their video are not rendered: rank 5 keeps prompt 3 only, whose negative is its own.
  const std::vector<bool> some = {true, false, true, true, true};
  EXPECT_EQ(s.prompts_of(5, some), (std::vector<size_t>{3}));
  EXPECT_TRUE(s.needs_default_negative(4, some));
  EXPECT_FALSE(s.needs_default_negative(5, some));
  EXPECT_TRUE(s.needs_default_negative(5, all));
  EXPECT_TRUE(s.is_encoder(5));
  EXPECT_FALSE(s.is_encoder(3));
}

TEST(TextSchedule, SharedRoleEncodesOnEachReplicasWritingRank) {
  // 2 replicas × ulysses 2, no cfg split: both ranks of a replica run both passes.
  const auto plan = plan_of({.replicas = 2, .ulysses = 2}, 4);
  const TextSchedule s = make_text_schedule(plan, job_with(3, 5.0));
  EXPECT_FALSE(s.dedicated);
  EXPECT_EQ(s.encoders, (std::vector<int>{0, 2}));
  for (size_t i = 0; i < 3; ++i) {
    const PromptRoute& r = s.prompts[i];
    const int first = i % 2 == 0 ? 0 : 2;
    EXPECT_EQ(r.encoder, first) << i;
    EXPECT_EQ(r.context_ranks, (std::vector<int>{first, first + 1})) << i;
    EXPECT_EQ(r.negative_ranks, (std::vector<int>{first, first + 1})) << i;
    EXPECT_TRUE(r.default_negative);
  }
}

TEST(TextSchedule, WithoutGuidanceNoRankNeedsANegative) {
  const auto plan = plan_of({.cfg = 2, .text_ranks = 1}, 3);
  const TextSchedule s = make_text_schedule(plan, job_with(2, 1.0));
  for (const PromptRoute& r : s.prompts) {
    EXPECT_EQ(r.context_ranks, (std::vector<int>{0, 1}));  // guidance 1: both cfg ranks run the one pass
    EXPECT_TRUE(r.negative_ranks.empty());
    EXPECT_FALSE(r.default_negative);
  }
  EXPECT_FALSE(s.needs_default_negative(2, {true, true}));
}

TEST(TextSchedule, TagsAreDistinct) {
  const auto plan = plan_of({.text_ranks = 1}, 2);
  const TextSchedule s = make_text_schedule(plan, job_with(4, 5.0));
  std::set<int> tags;
  for (size_t i = 0; i < 4; ++i) {
    tags.insert(TextSchedule::context_tag(i));
    tags.insert(TextSchedule::negative_tag(i));
  }
  tags.insert(s.default_negative_tag());
  tags.insert(s.cache_entries_tag());
  EXPECT_EQ(tags.size(), 10u);
}

}  // namespace
}  // namespace ditrun

// DenoiseLoop's recorded steps (Backend::run_recorded: CUDA graphs on the GPU). On the GPU a whole step recorded
// (both CFG passes, the combine and the solver update) and replayed gives the directly run step's latent bit for
// bit; the loop, restarted for later latents, records step i at its second run and replays it from the third. On
// the CPU, where run_recorded just runs the work, the same tests check the control flow: the keys, the fallbacks
// and that a restarted loop (and its solver) carries nothing over from the previous latent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "launcher/denoise.h"
#include "model/core/backend.h"
#include "model/core/philox.h"
#include "model/wan/dit_source.h"
#include "tests/test_backend.h"

using namespace ditrun;

namespace {

class DenoiseRecording : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    // Recording on, whatever the caller's environment says (the backend reads it when it is made).
    unsetenv("DITRUN_CUDA_GRAPHS");
    auto [backend, unavailable] = test_backend(GetParam());
    if (!backend) GTEST_SKIP() << unavailable;
    backend_ = std::move(backend);
    dit_ = std::make_unique<wan::DiT>(wan::make_dit(*backend_, wan::resolve_dit_source("tiny")));
    cond_ = encode(1, 7);
    uncond_ = encode(2, 3);
  }
  bool on_gpu() const { return GetParam() == "cuda"; }

  // A context of `rows` random rows (philox stream `stream`), encoded.
  wan::ContextCache encode(uint64_t stream, int64_t rows) {
    const auto& c = dit_->config();
    std::vector<float> context(static_cast<size_t>(rows * c.text_dim));
    for (size_t i = 0; i < context.size(); ++i) context[i] = 0.5f * philox_normal(3, stream, i);
    return dit_->encode_context(context, rows);
  }

  static SamplingParams settings(const std::string& solver) {
    SamplingParams s;
    s.steps = 5;  // UniPC: orders 1, 2, 2, 2 and the final step's data prediction; correctors of both orders
    s.guidance = 5.0;
    s.solver = solver;
    s.frames = 5;
    s.width = 64;
    s.height = 64;
    return s;
  }

  // All steps of `loop`, then its latent tokens on the host.
  std::vector<float> run(DenoiseLoop& loop) {
    for (int i = 0; i < loop.steps(); ++i) loop.step(i);
    const Tensor& x = loop.latent_tokens();
    std::vector<float> host(static_cast<size_t>(x.numel()));
    backend_->download(x, host.data());
    return host;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<wan::DiT> dit_;
  wan::ContextCache cond_, uncond_;
};

TEST_P(DenoiseRecording, WholeStepsRecordedAndReplayedEqualDirectStepsBitForBit) {
  Backend& be = *backend_;
  for (const std::string solver : {"unipc", "euler"}) {
    SCOPED_TRACE(solver);
    const SamplingParams s = settings(solver);
    std::vector<float> direct_a, direct_b;
    {
      DenoiseLoop direct(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::none);
      EXPECT_EQ(direct.recording_in_effect(), StepRecording::none);
      direct_a = run(direct);
      direct.restart(12, &cond_, &uncond_);
      direct_b = run(direct);
      // A restarted loop is a fresh one: the solver carries nothing over from the previous latent.
      DenoiseLoop fresh(*dit_, s, 12, nullptr, nullptr, &cond_, &uncond_, StepRecording::none);
      EXPECT_EQ(run(fresh), direct_b);
    }
    EXPECT_NE(direct_a, direct_b);

    const Backend::RecordingStats before = be.recording_stats();
    {
      DenoiseLoop recorded(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::whole_steps);
      ASSERT_TRUE(recorded.records_whole_steps());
      // Run 1: every step directly; run 2: every step recorded; runs 3 and 4: replayed (other noise, same buffers).
      EXPECT_EQ(run(recorded), direct_a);
      const Backend::RecordingStats after_first = be.recording_stats();
      recorded.restart(12, &cond_, &uncond_);
      EXPECT_EQ(run(recorded), direct_b);
      const Backend::RecordingStats after_second = be.recording_stats();
      recorded.restart(11, &cond_, &uncond_);
      EXPECT_EQ(run(recorded), direct_a);
      recorded.restart(12, &cond_, &uncond_);
      EXPECT_EQ(run(recorded), direct_b);
      const Backend::RecordingStats after_fourth = be.recording_stats();
      if (on_gpu()) {
        EXPECT_EQ(after_first.recorded, before.recorded);
        EXPECT_EQ(after_second.recorded - after_first.recorded, s.steps);  // one recording per step, no nesting
        EXPECT_EQ(after_fourth.recorded, after_second.recorded);
        EXPECT_EQ(after_fourth.replayed - after_second.replayed, 2 * s.steps);
        EXPECT_EQ(after_fourth.kept - before.kept, s.steps);
        EXPECT_GT(after_fourth.nodes, before.nodes);
      }
    }
    // The loop's recordings go with it.
    EXPECT_EQ(be.recording_stats().kept, before.kept);

    // Each forward recorded alone (DITRUN_CUDA_GRAPHS=forward) gives the same numbers too.
    DenoiseLoop forwards(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::forwards);
    EXPECT_EQ(forwards.recording_in_effect(), StepRecording::forwards);
    EXPECT_EQ(run(forwards), direct_a);
    forwards.restart(12, &cond_, &uncond_);
    EXPECT_EQ(run(forwards), direct_b);
  }
}

TEST_P(DenoiseRecording, StepKeysNameTheLoopTheStepAndTheContexts) {
  const SamplingParams s = settings("unipc");
  DenoiseLoop loop(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::whole_steps);
  const std::string prefix = loop.step_recording_key(-1), k0 = loop.step_recording_key(0);
  EXPECT_EQ(k0.rfind(prefix, 0), 0u);
  EXPECT_NE(k0, loop.step_recording_key(1));
  // Another loop (other buffers) has other keys, even for the same step and caches.
  DenoiseLoop other(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::whole_steps);
  EXPECT_NE(other.step_recording_key(0), k0);
  EXPECT_NE(other.step_recording_key(0).rfind(prefix, 0), 0u);
  // The same caches after a restart: the same keys; other cache tensors: other keys.
  loop.restart(12, &cond_, &uncond_);
  EXPECT_EQ(loop.step_recording_key(0), k0);
  wan::ContextCache cond2 = encode(4, 5);
  loop.restart(12, &cond2, &uncond_);
  EXPECT_NE(loop.step_recording_key(0), k0);
  // Re-encoding into a cache keeps its tensors, so a kept cache keeps the keys.
  const auto& c = dit_->config();
  const std::vector<float> context(static_cast<size_t>(9 * c.text_dim), 0.25f);
  const uint64_t hash = wan::context_address_hash(cond2);
  dit_->encode_context_into(cond2, context, 9);
  EXPECT_EQ(wan::context_address_hash(cond2), hash);
  EXPECT_NE(wan::context_address_hash(cond2), wan::context_address_hash(cond_));
}

TEST_P(DenoiseRecording, StepsThatCannotBeOneRecordingFallBack) {
  const SamplingParams s = settings("unipc");
  DenoiseLoop loop(*dit_, s, 11, nullptr, nullptr, &cond_, &uncond_, StepRecording::whole_steps);
  const std::vector<float> recorded = run(loop);
  // A block observer calls back to the host between blocks: steps and forwards then run directly.
  int calls = 0;
  dit_->set_block_observer([&](int, const Tensor&) { ++calls; });
  EXPECT_FALSE(loop.records_whole_steps());
  EXPECT_EQ(loop.recording_in_effect(), StepRecording::none);
  loop.restart(11, &cond_, &uncond_);
  EXPECT_EQ(run(loop), recorded);
  EXPECT_EQ(calls, s.steps * 2 * (dit_->config().layers + 1));
  dit_->set_block_observer({});
  EXPECT_TRUE(loop.records_whole_steps());
  // Guidance 1: the conditional pass alone, still one recording per step.
  SamplingParams unguided = s;
  unguided.guidance = 1.0;
  DenoiseLoop cond_only(*dit_, unguided, 11, nullptr, nullptr, &cond_, nullptr, StepRecording::whole_steps);
  EXPECT_TRUE(cond_only.records_whole_steps());
  const std::vector<float> first = run(cond_only);
  cond_only.restart(11, &cond_, nullptr);
  EXPECT_EQ(run(cond_only), first);
  cond_only.restart(11, &cond_, nullptr);
  EXPECT_EQ(run(cond_only), first);
}

// A run_recorded inside recorded work (a step recording its forwards) runs into the outer recording instead of
// starting a second capture; forget_recorded drops a recording, which is then run directly again.
TEST_P(DenoiseRecording, NestedRecordingJoinsTheOuterOne) {
  Backend& be = *backend_;
  Tensor x = be.allocate({1000}, DType::f32), y = be.allocate({1000}, DType::f32);
  const std::vector<float> ones(1000, 1.f);
  const float c[2] = {0.5f, 1.f};
  const Tensor* in[2] = {&x, &y};
  const auto work = [&] {
    be.lincomb(x, c, in);  // x = x/2 + y
    be.run_recorded("inner", [&] { be.lincomb(y, c, in); });  // y = x/2 + y
  };
  const auto run_three = [&](bool recorded) {
    be.upload(x, ones.data());
    be.upload(y, ones.data());
    for (int i = 0; i < 3; ++i) {
      if (recorded) {
        be.run_recorded("outer", work);
      } else {
        be.lincomb(x, c, in);
        be.lincomb(y, c, in);
      }
    }
    std::vector<float> out(1000);
    be.download(y, out.data());
    return out;
  };
  const Backend::RecordingStats before = be.recording_stats();
  const std::vector<float> direct = run_three(false);
  const Backend::RecordingStats after_direct = be.recording_stats();
  EXPECT_EQ(run_three(true), direct);
  const Backend::RecordingStats after = be.recording_stats();
  if (on_gpu()) {
    EXPECT_EQ(after_direct.recorded, before.recorded);
    EXPECT_EQ(after.recorded - after_direct.recorded, 1);  // "outer" only
    EXPECT_EQ(after.replayed - after_direct.replayed, 1);
    EXPECT_EQ(after.kept - before.kept, 1);
  }
  be.forget_recorded("outer");
  EXPECT_EQ(be.recording_stats().kept, before.kept);
  EXPECT_EQ(run_three(true), direct);
}

INSTANTIATE_TEST_SUITE_P(Backends, DenoiseRecording, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace

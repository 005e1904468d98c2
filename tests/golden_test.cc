// The DiT and the samplers against goldens made by diffusers (tests/golden/README.md): on the CPU backend within
// 1e-4 relative L2, on the CUDA backend (when a GPU is present) within 2e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "io/hdf5_file.h"
#include "model/core/backend.h"
#include "model/sampling/schedule.h"
#include "model/sampling/solver.h"
#include "model/wan/dit_source.h"
#include "tests/relative_l2.h"
#include "tests/test_backend.h"

using namespace ditrun;
using ditrun::testing::relative_l2;
namespace fs = std::filesystem;

namespace {

fs::path golden_dir() {
  if (const char* env = std::getenv("DITRUN_GOLDEN_DIR")) return env;
  return DITRUN_GOLDEN_DIR;
}


class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto [backend, unavailable] = test_backend(GetParam());
    if (!backend) GTEST_SKIP() << unavailable;
    backend_ = std::move(backend);
  }
  double tolerance() const { return GetParam() == "cuda" ? 2e-2 : 1e-4; }

  // One forward of the model in `folder` on the golden inputs.
  std::vector<float> forward(wan::DiT& dit, const io::Hdf5File& f, const char* x_name, const char* t_name,
                             const char* context_name) {
    std::vector<int64_t> shape, cshape;
    const auto x_host = f.read_f32(x_name, &shape);
    const auto context = f.read_f32(context_name, &cshape);
    Backend& be = *backend_;
    Tensor x = be.allocate(shape, DType::f32), v = be.allocate(shape, DType::f32);
    be.upload(x, x_host.data());
    const auto cache = dit.encode_context(context, cshape[0]);
    dit.forward(v, x, f.read_scalar(t_name), cache);
    std::vector<float> out(x_host.size());
    be.download(v, out.data());
    return out;
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(Golden, DitForwardMatchesDiffusers) {
  const io::Hdf5File f(golden_dir() / "dit_forward.h5", io::Hdf5File::Mode::read);
  wan::DiT dit = wan::make_dit(*backend_, wan::resolve_dit_source((golden_dir() / "tiny_dit").string()));
  const double e1 = relative_l2(forward(dit, f, "x", "t", "context"), f.read_f64("v"));
  const double e2 = relative_l2(forward(dit, f, "x", "t", "context_null"), f.read_f64("v_null"));
  const double e3 = relative_l2(forward(dit, f, "x2", "t2", "context"), f.read_f64("v2"));
  std::printf("[%s] relative L2: v %.2e, v_null %.2e, v2 (odd latent) %.2e\n", GetParam().c_str(), e1, e2, e3);
  EXPECT_LT(e1, tolerance());
  EXPECT_LT(e2, tolerance());
  EXPECT_LT(e3, tolerance());
  // The conditional and unconditional outputs differ, so the context path matters.
  EXPECT_GT(relative_l2(forward(dit, f, "x", "t", "context"), f.read_f64("v_null")), 0.1);
}

// Backend::run_recorded (CUDA graphs): the first forward runs directly, the second is recorded, later ones replay.
// A replay must give the direct forward's numbers exactly, for a new timestep too (its sinusoid is uploaded
// outside the recording); a forward with an observer always runs directly, the reference here.
TEST_P(Golden, RecordedForwardsEqualDirectOnesBitForBit) {
  const io::Hdf5File f(golden_dir() / "dit_forward.h5", io::Hdf5File::Mode::read);
  wan::DiT dit = wan::make_dit(*backend_, wan::resolve_dit_source((golden_dir() / "tiny_dit").string()));
  std::vector<int64_t> shape, cshape;
  const auto x_host = f.read_f32("x", &shape);
  const auto context = f.read_f32("context", &cshape);
  Backend& be = *backend_;
  Tensor x = be.allocate(shape, DType::f32), v = be.allocate(shape, DType::f32);
  be.upload(x, x_host.data());
  const auto cache = dit.encode_context(context, cshape[0]);
  auto run = [&](double t) {
    dit.forward(v, x, t, cache);
    std::vector<float> out(x_host.size());
    be.download(v, out.data());
    return out;
  };
  const auto direct = run(900), recorded = run(900), replayed = run(900), replayed_other_t = run(300);
  EXPECT_EQ(recorded, direct);
  EXPECT_EQ(replayed, direct);
  dit.set_block_observer([](int, const Tensor&) {});
  const auto direct_other_t = run(300);
  EXPECT_EQ(replayed_other_t, direct_other_t);
  EXPECT_GT(relative_l2(direct_other_t, direct), 1e-3);  // the timestep reached the replay
}

TEST_P(Golden, OriginalWanNamesAndBf16CheckpointsLoad) {
  const io::Hdf5File f(golden_dir() / "dit_forward.h5", io::Hdf5File::Mode::read);
  wan::DiT wan_names = wan::make_dit(*backend_, wan::resolve_dit_source((golden_dir() / "tiny_dit_wan_names").string()));
  EXPECT_LT(relative_l2(forward(wan_names, f, "x", "t", "context"), f.read_f64("v")), tolerance());
  wan::DiT bf16 = wan::make_dit(*backend_, wan::resolve_dit_source((golden_dir() / "tiny_dit_bf16").string()));
  EXPECT_LT(relative_l2(forward(bf16, f, "x", "t", "context"), f.read_f64("v_bf16weights")), tolerance());
}

// A CFG sampling loop driven by the golden's own schedule: checks the DiT, CFG and the solver step by step.
void run_sampler(Backend& be, const std::string& group, const std::string& solver_name, double tolerance) {
  const io::Hdf5File f(golden_dir() / "sampler.h5", io::Hdf5File::Mode::read);
  wan::DiT dit = wan::make_dit(be, wan::resolve_dit_source((golden_dir() / "tiny_dit").string()));
  std::vector<int64_t> shape, cshape, nshape;
  const auto x_host = f.read_f32("x_T", &shape);
  const auto cond = f.read_f32("context", &cshape), uncond = f.read_f32("context_null", &nshape);
  const double g = f.read_scalar("guidance_scale");
  sampling::Schedule schedule;
  schedule.timesteps = f.read_f64(group + "/timesteps");
  schedule.sigmas = f.read_f64(group + "/sigmas");
  auto solver = sampling::make_solver(solver_name, be, schedule, shape);
  Tensor x = be.allocate(shape, DType::f32), vc = be.allocate(shape, DType::f32);
  Tensor vu = be.allocate(shape, DType::f32), v = be.allocate(shape, DType::f32);
  be.upload(x, x_host.data());
  const auto cc = dit.encode_context(cond, cshape[0]), cu = dit.encode_context(uncond, nshape[0]);
  std::vector<float> got(x_host.size());
  for (int i = 0; i < schedule.steps(); ++i) {
    dit.forward(vc, x, schedule.timesteps[i], cc);
    dit.forward(vu, x, schedule.timesteps[i], cu);
    const float coeffs[2] = {static_cast<float>(g), static_cast<float>(1 - g)};
    const Tensor* in[2] = {&vc, &vu};
    be.lincomb(v, coeffs, in);
    solver->step(i, v, x);
    char name[64];
    std::snprintf(name, sizeof name, "%s/x/%04d", group.c_str(), i + 1);
    be.download(x, got.data());
    const double e = relative_l2(got, f.read_f64(name));
    std::printf("[%s] %s step %d: relative L2 %.2e\n", be.name().c_str(), group.c_str(), i + 1, e);
    EXPECT_LT(e, tolerance) << name;
  }
}

TEST_P(Golden, UniPcSamplingMatchesDiffusers) { run_sampler(*backend_, "unipc", "unipc", tolerance()); }
TEST_P(Golden, UniPcOnTheWanGridMatchesDiffusers) { run_sampler(*backend_, "unipc_wan_grid", "unipc", tolerance()); }
TEST_P(Golden, EulerSamplingMatchesDiffusers) { run_sampler(*backend_, "euler", "euler", tolerance()); }

INSTANTIATE_TEST_SUITE_P(Backends, Golden, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

// Our schedules give the timesteps and sigmas the goldens were made with.
TEST(GoldenSchedule, DiffusersAndWanGrids) {
  const io::Hdf5File f(golden_dir() / "sampler.h5", io::Hdf5File::Mode::read);
  struct Case {
    const char* group;
    sampling::SigmaGrid grid;
  };
  for (const Case c : {Case{"unipc", sampling::SigmaGrid::diffusers}, Case{"unipc_wan_grid", sampling::SigmaGrid::wan}}) {
    const auto ts = f.read_f64(std::string(c.group) + "/timesteps");
    const auto sig = f.read_f64(std::string(c.group) + "/sigmas");
    const auto ours = sampling::flow_schedule(static_cast<int>(ts.size()), 3.0, c.grid);
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(ours.timesteps[i], ts[i]) << c.group << " " << i;
    for (size_t i = 0; i < sig.size(); ++i) EXPECT_NEAR(ours.sigmas[i], sig[i], 1e-6) << c.group << " " << i;
  }
}

}  // namespace

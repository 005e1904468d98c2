// The ditrun binary as a user runs it: --help/--version, plan, and run under mpirun (good and bad input).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "io/hdf5_file.h"
#include "io/video_writer.h"
#include "tests/relative_l2.h"

using ditrun::testing::relative_l2;

namespace fs = std::filesystem;

namespace {

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditrun_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::string& args) {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string cmd = "cd " + dir_.string() + " && " + args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }
  std::string ditrun() const { return DITRUN_BINARY; }
  std::string mpirun(int np) const {
    return std::string(DITRUN_MPIEXEC) + " -np " + std::to_string(np) + " " + DITRUN_MPIEXEC_FLAGS + " " + DITRUN_BINARY;
  }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  static int count_lines_with(const std::string& text, const std::string& needle) {
    int n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
    return n;
  }
  fs::path dir_;
};

const char* kJob = R"(
[model]
name = "tiny"
[parallel]
cfg = 2
[sampling]
steps = 3
frames = 5
width = 64
height = 48
[output]
dir = "out"
[prompts]
list = ["a red fox in snow", {id = "boat", prompt = "a sailing boat at dawn", seed = 42}]
embeddings = "emb.h5"
)";

// Embeddings for kJob's prompts (tiny model: text_dim 64), deterministic.
void write_embeddings(const fs::path& path) {
  ditrun::io::Hdf5File f(path, ditrun::io::Hdf5File::Mode::write);
  auto fill = [](int rows, float phase) {
    std::vector<float> v(static_cast<size_t>(rows) * 64);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * std::sin(0.37f * static_cast<float>(i) + phase);
    return v;
  };
  for (const auto& [id, rows, phase] : {std::tuple{"p0000", 6, 0.1f}, std::tuple{"boat", 9, 0.7f}})
    f.write_f32(std::string(id) + "/context", fill(rows, phase).data(), {rows, 64});
  f.write_f32("negative/context", fill(4, 1.3f).data(), {4, 64});
}

std::vector<float> read_latents(const fs::path& path) {
  return ditrun::io::Hdf5File(path, ditrun::io::Hdf5File::Mode::read).read_f32("latents");
}


}  // namespace

TEST_F(Cli, VersionAndHelp) {
  Result v = run(ditrun() + " --version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("ditrun 0."), std::string::npos) << v.out;
  // The commit is the checkout's at build time (cmake/build_commit.cmake), not an older one from configure time.
  Result head = run("git -C " DITRUN_GOLDEN_DIR " rev-parse --short=10 HEAD");
  if (head.code == 0 && !head.out.empty()) {
    const std::string commit = head.out.substr(0, head.out.find_first_of("\r\n"));
    EXPECT_NE(v.out.find("(" + commit), std::string::npos) << v.out << " vs HEAD " << commit;
  }
  Result h = run(ditrun() + " --help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("run"), std::string::npos);
  EXPECT_NE(h.out.find("plan"), std::string::npos);
  Result bad = run(ditrun() + " frobnicate");
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(count_lines_with(bad.err, "ditrun: error:"), 1) << bad.err;
}

TEST_F(Cli, PlanPrintsEveryGroupWithRanksAndHosts) {
  Result r = run(ditrun() + " plan --gpus 64 --gpus-per-node 8 --cfg 2 --ulysses 8 --ring 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ulysses groups: 8 × 8 ranks, each within one host"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ulysses[7]  ranks 56-63  hosts node007"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ring[0]  ranks 0,8,16,24  hosts node000,node001,node002,node003"), std::string::npos);
  EXPECT_NE(r.out.find("cfg[0]  ranks 0,32  hosts node000,node004"), std::string::npos);
  // Round-robin launch: Ulysses groups still inside one node.
  Result rr = run(ditrun() + " plan --gpus 16 --gpus-per-node 8 --ulysses 8 --ring 2 --launch cyclic --json");
  ASSERT_EQ(rr.code, 0) << rr.err;
  const auto j = nlohmann::json::parse(rr.out);
  for (const auto& g : j["groups"]["ulysses"]) EXPECT_EQ(g["hosts"].size(), 1u) << g.dump();
  EXPECT_EQ(j["groups"]["ulysses"][0]["ranks"], nlohmann::json::parse("[0,2,4,6,8,10,12,14]"));
}

TEST_F(Cli, PlanFromAJobFileAndWarnings) {
  write("job.toml", kJob);
  Result r = run(ditrun() + " plan job.toml --gpus 8 --gpus-per-node 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("replicas 4 × cfg 2 × pipefusion 1 × ring 1 × ulysses 1 = 8 DiT ranks"), std::string::npos)
      << r.out;
  Result w = run(ditrun() + " plan --gpus 12 --gpus-per-node 4 --ulysses 6");
  ASSERT_EQ(w.code, 0);
  EXPECT_NE(w.out.find("warning: ulysses group 0 spans hosts node000,node001"), std::string::npos) << w.out;
}

TEST_F(Cli, PlanRejectsBadLayoutsWithOneLineAndCode2) {
  for (const std::string args : {" plan --gpus 8 --cfg 3", " plan --gpus 8 --ulysses 0", " plan --gpus 6 --ulysses 4",
                                 " plan --gpus 4 --vae-ranks 5", " plan --cfg 2"}) {
    Result r = run(ditrun() + args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(count_lines_with(r.err, "ditrun: error:"), 1) << args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << args;
  }
}

TEST_F(Cli, RunUnderMpirunBuildsAndChecksEveryCommunicatorAndWritesTheReport) {
  write("job.toml", kJob);
  write_embeddings(dir_ / "emb.h5");
  const auto start = std::chrono::steady_clock::now();
  Result r = run(mpirun(4) + " run job.toml --backend cpu");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  EXPECT_NE(r.err.find("layout: replicas 2 × cfg 2"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "carriage return in a log";
  ASSERT_TRUE(fs::exists(dir_ / "out" / "report.json"));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "report.json.part"));
  const auto report = nlohmann::json::parse(slurp(dir_ / "out" / "report.json"));
  EXPECT_EQ(report["status"], "ok");
  EXPECT_EQ(report["world"]["ranks"], 4);
  EXPECT_EQ(report["backend"]["communicators"], "mpi");
  EXPECT_EQ(report["job"]["sampling"]["steps"], 3);
  EXPECT_EQ(report["job"]["prompts"]["count"], 2);
  EXPECT_EQ(report["plan"]["layout"]["cfg"], 2);
  EXPECT_EQ(report["plan"]["layout"]["replicas"], 2);
  const auto& groups = report["plan"]["groups"];
  EXPECT_EQ(groups["ulysses"].size(), 4u);
  EXPECT_EQ(groups["cfg"][0]["ranks"], nlohmann::json::parse("[0,1]"));
  int checked = 0;
  for (const auto& [kind, list] : groups.items())
    for (const auto& g : list) {
      ASSERT_TRUE(g.contains("check")) << kind;
      EXPECT_TRUE(g["check"]["ok"].get<bool>()) << kind << g.dump();
      ++checked;
    }
  EXPECT_GE(checked, 11);
  std::vector<std::string> stages;
  for (const auto& s : report["stages"]) stages.push_back(s["stage"]);
  EXPECT_NE(std::find(stages.begin(), stages.end(), "build communicators"), stages.end());
  EXPECT_NE(std::find(stages.begin(), stages.end(), "total"), stages.end());
  // Every prompt denoised once, by its replica, into a complete latents file.
  ASSERT_EQ(report["prompts"].size(), 2u);
  for (const auto& p : report["prompts"]) {
    EXPECT_EQ(p["status"], "done") << p.dump();
    EXPECT_EQ(p["step_seconds"].size(), 3u);
    EXPECT_EQ(p["latent_shape"], nlohmann::json::parse("[16, 2, 6, 8]"));
    EXPECT_EQ(p["frames"], 5) << p.dump();  // 1 + 4·(2 − 1) from the tiny VAE
    EXPECT_TRUE(fs::exists(dir_ / p["video"].get<std::string>())) << p.dump();
  }
  EXPECT_TRUE(fs::exists(dir_ / "out" / "boat.mp4") || !ditrun::io::mp4_supported());
  for (const char* id : {"p0000", "boat"}) {
    const auto latents = read_latents(dir_ / "out" / (std::string(id) + ".latents.h5"));
    ASSERT_EQ(latents.size(), 16u * 2 * 6 * 8);
    double norm = 0;
    for (float v : latents) norm += v * v;
    EXPECT_GT(norm, 1.0) << id;
  }
  // A rerun keeps complete outputs.
  Result again = run(mpirun(4) + " run job.toml --backend cpu");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto report2 = nlohmann::json::parse(slurp(dir_ / "out" / "report.json"));
  for (const auto& p : report2["prompts"]) EXPECT_EQ(p["status"], "skipped (output exists)");
}

TEST_F(Cli, CfgParallelAndReplicasGiveTheSingleRankLatents) {
  write_embeddings(dir_ / "emb.h5");
  write("split.toml", kJob);
  std::string one = kJob;
  one.replace(one.find("cfg = 2"), 7, "cfg = 1");
  one.replace(one.find("dir = \"out\""), 11, "dir = \"one\"");
  write("one.toml", one);
  ASSERT_EQ(run(mpirun(4) + " run split.toml").code, 0);
  Result single = run(ditrun() + " run one.toml");
  ASSERT_EQ(single.code, 0) << single.err;
  for (const char* id : {"p0000", "boat"}) {
    const std::string file = std::string(id) + ".latents.h5";
    const double e = relative_l2(read_latents(dir_ / "out" / file), read_latents(dir_ / "one" / file));
    EXPECT_LT(e, 1e-5) << id;
  }
}

TEST_F(Cli, EveryLayoutOf1To8RanksGivesTheSingleRankLatents) {
  // 45 latent tokens (3 × 3 × 5): not a multiple of any sequence-parallel degree above 1; the tiny model's 4 heads
  // do not divide over 8 Ulysses ranks.
  write_embeddings(dir_ / "emb.h5");
  auto job = [](int cfg, int ring, int ulysses, const std::string& out, bool ulysses_overlap = false) {
    return "[parallel]\ncfg = " + std::to_string(cfg) + "\nring = " + std::to_string(ring) + "\nulysses = " +
           std::to_string(ulysses) + "\nulysses_overlap = " + (ulysses_overlap ? "true" : "false") +
           "\n[sampling]\nsteps = 3\nframes = 9\nwidth = 80\nheight = 48\n[output]\ndir = \"" + out +
           "\"\n[prompts]\nlist = [\"a red fox in snow\"]\nembeddings = \"emb.h5\"\n";
  };
  write("ref.toml", job(1, 1, 1, "ref"));
  Result ref = run(ditrun() + " run ref.toml");
  ASSERT_EQ(ref.code, 0) << ref.err;
  const auto want = read_latents(dir_ / "ref" / "p0000.latents.h5");
  ASSERT_EQ(want.size(), 16u * 3 * 6 * 10);
  const int layouts[][3] = {{2, 1, 1}, {1, 2, 1}, {1, 1, 2}, {2, 2, 1}, {2, 1, 2}, {1, 2, 2}, {1, 4, 1},
                            {1, 1, 4}, {2, 2, 2}, {2, 1, 4}, {2, 4, 1}, {1, 2, 4}, {1, 4, 2}, {1, 8, 1}, {1, 1, 8}};
  for (const auto& l : layouts) {
    const int ranks = l[0] * l[1] * l[2];
    const std::string name = "c" + std::to_string(l[0]) + "r" + std::to_string(l[1]) + "u" + std::to_string(l[2]);
    write(name + ".toml", job(l[0], l[1], l[2], name));
    Result r = run(mpirun(ranks) + " run " + name + ".toml");
    ASSERT_EQ(r.code, 0) << name << "\n" << r.err;
    const double e = relative_l2(read_latents(dir_ / name / "p0000.latents.h5"), want);
    std::printf("layout cfg %d × ring %d × ulysses %d (%d ranks): relative L2 vs 1 rank %.2e\n", l[0], l[1], l[2],
                ranks, e);
    EXPECT_LT(e, 1e-5) << name;
    // The report says what the exchanges moved and took; on the CPU (MPI on the host) nothing is hidden.
    const auto report = nlohmann::json::parse(slurp(dir_ / name / "report.json"));
    const auto& entry = report["prompts"][0];
    if (l[1] * l[2] > 1) {
      const auto& sp = entry["sequence_parallel"];
      EXPECT_EQ(sp["degree"], l[1] * l[2]) << name;
      EXPECT_GT(sp["ulysses_bytes_sent"].get<double>() + sp["ring_bytes_sent"].get<double>(), 0) << name;
      EXPECT_GT(sp["comm_ms"].get<double>(), 0) << name;
      EXPECT_DOUBLE_EQ(sp["comm_exposed_ms"].get<double>(), sp["comm_ms"].get<double>()) << name;
      EXPECT_DOUBLE_EQ(sp["comm_hidden_share"].get<double>(), 0.0) << name;
    } else {
      EXPECT_FALSE(entry.contains("sequence_parallel")) << name;
    }
  }
  // Ulysses head-group pipelining (2 of the tiny model's 4 heads per rank: two groups of one head).
  for (const auto& l : {std::array{1, 1, 2}, std::array{2, 2, 2}}) {
    const std::string name = "pipelined_c" + std::to_string(l[0]) + "r" + std::to_string(l[1]);
    write(name + ".toml", job(l[0], l[1], l[2], name, true));
    Result r = run(mpirun(l[0] * l[1] * l[2]) + " run " + name + ".toml");
    ASSERT_EQ(r.code, 0) << name << "\n" << r.err;
    EXPECT_LT(relative_l2(read_latents(dir_ / name / "p0000.latents.h5"), want), 1e-5) << name;
  }
}

TEST_F(Cli, DitForwardUnderEveryLayoutMatchesTheGolden) {
  const std::string golden = DITRUN_GOLDEN_DIR;
  const ditrun::io::Hdf5File ref(golden + "/dit_forward.h5", ditrun::io::Hdf5File::Mode::read);
  // 36 tokens and 2 heads: ulysses 4 pads the heads, ring 8 pads the last shard.
  const int layouts[][3] = {{2, 1, 1}, {1, 2, 2}, {2, 1, 4}, {1, 8, 1}, {2, 2, 2}};
  for (const auto& l : layouts) {
    const int ranks = l[0] * l[1] * l[2];
    const std::string out = "v" + std::to_string(ranks) + std::to_string(l[1]) + ".h5";
    Result r = run(mpirun(ranks) + " dit-forward --model " + golden + "/tiny_dit --in " + golden +
                   "/dit_forward.h5 --out " + out + " --cfg " + std::to_string(l[0]) + " --ring " +
                   std::to_string(l[1]) + " --ulysses " + std::to_string(l[2]));
    ASSERT_EQ(r.code, 0) << r.err;
    const ditrun::io::Hdf5File got(dir_ / out, ditrun::io::Hdf5File::Mode::read);
    EXPECT_LT(relative_l2(got.read_f32("v"), ref.read_f32("v")), 1e-4) << out;
    EXPECT_LT(relative_l2(got.read_f32("v_null"), ref.read_f32("v_null")), 1e-4) << out;
  }
  Result bad = run(mpirun(4) + " dit-forward --model " + golden + "/tiny_dit --in " + golden +
                   "/dit_forward.h5 --out w.h5 --ulysses 2");  // 4 ranks, layout of 2
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(count_lines_with(bad.err, "ditrun: error:"), 1) << bad.err;
}

TEST_F(Cli, DitForwardMatchesTheGolden) {
  const std::string golden = DITRUN_GOLDEN_DIR;
  Result r = run(ditrun() + " dit-forward --model " + golden + "/tiny_dit --in " + golden + "/dit_forward.h5 --out v.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  const ditrun::io::Hdf5File out(dir_ / "v.h5", ditrun::io::Hdf5File::Mode::read);
  const ditrun::io::Hdf5File ref(golden + "/dit_forward.h5", ditrun::io::Hdf5File::Mode::read);
  EXPECT_LT(relative_l2(out.read_f32("v"), ref.read_f32("v")), 1e-4);
  EXPECT_LT(relative_l2(out.read_f32("v_null"), ref.read_f32("v_null")), 1e-4);
  // Bad input: one line, exit 2, no output.
  for (const std::string args : {std::string(" dit-forward --model tiny --in ") + golden + "/dit_forward.h5 --out w.h5",  // text_dim 64 ≠ 32
                                 " dit-forward --model nowhere --in " + golden + "/dit_forward.h5 --out w.h5",
                                 std::string(" dit-forward --model tiny --in missing.h5 --out w.h5")}) {
    Result bad = run(ditrun() + args);
    EXPECT_EQ(bad.code, 2) << args;
    EXPECT_EQ(count_lines_with(bad.err, "ditrun: error:"), 1) << bad.err;
    EXPECT_FALSE(fs::exists(dir_ / "w.h5"));
  }
}

TEST_F(Cli, BadInputUnderMpirunIsOneLineAndCode2AndWritesNothing) {
  std::string job = kJob;
  job.replace(job.find("cfg = 2"), 7, "cfg = 3");
  write("bad_cfg.toml", job);
  Result r = run(mpirun(2) + " run bad_cfg.toml");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(count_lines_with(r.err + r.out, "ditrun: error:"), 1) << r.err;
  EXPECT_NE(r.err.find("parallel.cfg"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out"));

  write("good.toml", kJob);
  write_embeddings(dir_ / "emb.h5");
  Result wrong_world = run(mpirun(3) + " run good.toml");  // cfg 2 does not fit 3 ranks
  EXPECT_EQ(wrong_world.code, 2);
  EXPECT_EQ(count_lines_with(wrong_world.err, "ditrun: error:"), 1) << wrong_world.err;
  EXPECT_NE(wrong_world.err.find("not a multiple of"), std::string::npos) << wrong_world.err;

  std::string pf = kJob;
  pf.replace(pf.find("cfg = 2"), 7, "pipefusion = 2");
  write("pf.toml", pf);
  Result unsupported = run(mpirun(2) + " run pf.toml");
  EXPECT_EQ(unsupported.code, 2);
  EXPECT_NE(unsupported.err.find("not implemented in this build yet"), std::string::npos) << unsupported.err;

  std::string no_emb = kJob;
  const std::string emb_key = "embeddings = \"emb.h5\"";
  no_emb.replace(no_emb.find(emb_key), emb_key.size(), "embeddings = \"x.h5\"");
  write("no_emb.toml", no_emb);
  Result missing_emb = run(mpirun(2) + " run no_emb.toml");
  EXPECT_EQ(missing_emb.code, 2);
  EXPECT_NE(missing_emb.err.find("embeddings file does not exist"), std::string::npos) << missing_emb.err;

  Result missing = run(mpirun(2) + " run nope.toml");
  EXPECT_EQ(missing.code, 2);
  EXPECT_EQ(count_lines_with(missing.err, "ditrun: error:"), 1) << missing.err;
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

// `--prompt-slice I/N` (job arrays): two slices render every prompt exactly once, with the seeds of the whole
// job, each writing its own report; bad values stop the run with one line and code 2.
TEST_F(Cli, PromptSlicesRenderEveryPromptOnceWithTheWholeJobsSeeds) {
  write("job.toml", kJob);
  write_embeddings(dir_ / "emb.h5");
  for (const char* slice : {"0/2", "1/2"}) {
    Result r = run(mpirun(2) + " run job.toml --prompt-slice " + slice);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE((r.err + r.out).find(std::string("prompt slice ") + slice), std::string::npos) << r.err;
  }
  std::map<std::string, int> done;
  for (const char* name : {"report.slice-0-of-2.json", "report.slice-1-of-2.json"}) {
    const auto report = nlohmann::json::parse(slurp(dir_ / "out" / name));
    EXPECT_EQ(report["prompt_slice"]["count"], 2);
    EXPECT_EQ(report["launch"]["launcher"], "mpirun");
    for (const auto& p : report["prompts"]) done[p["id"].get<std::string>()] += p["status"] == "done";
    if (report["prompt_slice"]["index"] == 1) EXPECT_EQ(report["job"]["prompts"]["items"][0]["seed"], 42);
  }
  EXPECT_EQ(done, (std::map<std::string, int>{{"boat", 1}, {"p0000", 1}}));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "report.json"));
  // The same latents as the whole job in one run.
  const auto sliced = read_latents(dir_ / "out" / "boat.latents.h5");
  fs::remove_all(dir_ / "out");
  Result whole = run(mpirun(2) + " run job.toml --report reports/whole.json");
  ASSERT_EQ(whole.code, 0) << whole.err;
  EXPECT_TRUE(fs::exists(dir_ / "reports" / "whole.json"));
  EXPECT_EQ(read_latents(dir_ / "out" / "boat.latents.h5"), sliced);
}

TEST_F(Cli, BadPromptSliceIsOneLineAndCode2) {
  write("job.toml", kJob);
  write_embeddings(dir_ / "emb.h5");
  for (const char* bad : {"2/2", "x", "1", "0/0", "-1/2", "1/2/3", "0/1000001"}) {
    Result r = run(mpirun(2) + " run job.toml --prompt-slice " + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_EQ(count_lines_with(r.err, "ditrun: error: --prompt-slice must be I/N"), 1) << r.err;
    EXPECT_EQ(count_lines_with(r.err + r.out, "ditrun: error:"), 1) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  Result help = run(ditrun() + " run --help");
  EXPECT_NE(help.out.find("--prompt-slice"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--report"), std::string::npos) << help.out;
}

// ------------------------------------------------------------------------------------------------ vae-decode

namespace {

std::vector<float> read_dataset(const fs::path& path, const std::string& name, std::vector<int64_t>* shape) {
  ditrun::io::Hdf5File f(path, ditrun::io::Hdf5File::Mode::read);
  return f.read_f32(name, shape);
}

}  // namespace

TEST_F(Cli, VaeDecodeFramesMatchTheDiffusersGolden) {
  const std::string golden = std::string(DITRUN_GOLDEN_DIR);
  Result r = run(ditrun() + " vae-decode --vae " + golden + "/tiny_vae --in " + golden + "/vae_decode.h5 --out f.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<int64_t> got_shape, want_shape;
  const auto got = read_dataset(dir_ / "f.h5", "frames", &got_shape);
  const auto want = read_dataset(golden + "/vae_decode.h5", "frames", &want_shape);
  ASSERT_EQ(got_shape, want_shape);
  EXPECT_EQ(got_shape, (std::vector<int64_t>{3, 9, 48, 64}));  // 1 + 4·(3 − 1) frames of 8h × 8w
  const double e = relative_l2(got, want);
  std::printf("vae-decode frames vs diffusers: relative L2 %.2e\n", e);
  EXPECT_LT(e, 1e-4);
}

TEST_F(Cli, VaeDecodeStreamsAVideoThatFfprobeReads) {
  const std::string golden = std::string(DITRUN_GOLDEN_DIR);
  Result y4m = run(ditrun() + " vae-decode --vae tiny --in " + golden + "/vae_decode.h5 --out v.y4m --fps 8");
  ASSERT_EQ(y4m.code, 0) << y4m.err;
  const std::string text = slurp(dir_ / "v.y4m");
  EXPECT_EQ(text.rfind("YUV4MPEG2 W64 H48 F8:1", 0), 0u) << text.substr(0, 60);
  int frames = 0;
  for (size_t at = text.find("FRAME\n"); at != std::string::npos; at = text.find("FRAME\n", at + 6)) ++frames;
  EXPECT_EQ(frames, 9);
  if (run("ffprobe -version").code != 0) GTEST_SKIP() << "ffprobe is not installed (setup.sh installs ffmpeg)";
  Result mp4 = run(ditrun() + " vae-decode --vae tiny --in " + golden + "/vae_decode.h5 --out v.mp4 --crf 20");
  if (mp4.code == 2 && mp4.err.find("without FFmpeg") != std::string::npos) GTEST_SKIP() << mp4.err;
  ASSERT_EQ(mp4.code, 0) << mp4.err;
  Result probe = run("ffprobe -v error -count_frames -show_entries stream=codec_name,width,height,nb_read_frames,"
                     "avg_frame_rate -of csv=p=0 v.mp4");
  ASSERT_EQ(probe.code, 0) << probe.err;
  EXPECT_EQ(probe.out, "h264,64,48,16/1,9\n");
  EXPECT_FALSE(fs::exists(dir_ / "v.mp4.part"));
}

TEST_F(Cli, VaeDecodeRejectsBadInputWithOneLineAndCode2) {
  const std::string golden = std::string(DITRUN_GOLDEN_DIR);
  const std::string in = golden + "/vae_decode.h5";
  const std::pair<std::string, std::string> cases[] = {
      {"--vae nope --in " + in + " --out x.mp4", "(--vae)"},
      {"--vae tiny --in missing.h5 --out x.y4m", "input file does not exist (missing.h5)"},
      {"--vae tiny --in " + in + " --out x.avi", "output must end in .mp4, .y4m or .h5 (x.avi)"},
      {"--vae tiny --in " + golden + "/dit_forward.h5 --out x.y4m", "dataset latents is missing"},
      {"--vae tiny --in " + in + " --out nodir/x.y4m", "output folder does not exist"},
      {"--vae tiny --in " + in + " --out x.y4m --fps 0", "fps must be 1 to 240, got 0 (--fps)"},
      {"--vae random:big --in " + in + " --out x.y4m", "unknown VAE config \"big\""},
  };
  for (const auto& [args, message] : cases) {
    Result r = run(ditrun() + " vae-decode " + args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(count_lines_with(r.err, "ditrun: error: "), 1) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
  }
  for (const auto& entry : fs::directory_iterator(dir_))  // nothing written but the captured output
    EXPECT_TRUE(entry.path().filename() == "stdout.txt" || entry.path().filename() == "stderr.txt") << entry.path();
  Result ranks = run(mpirun(2) + " vae-decode --vae tiny --in missing.h5 --out x.y4m");  // every rank checks
  EXPECT_EQ(ranks.code, 2);
  EXPECT_EQ(count_lines_with(ranks.err, "ditrun: error: "), 1) << ranks.err;
  EXPECT_NE(ranks.err.find("input file does not exist (missing.h5)"), std::string::npos) << ranks.err;
}

TEST_F(Cli, RunDecodesEachPromptAsVaeDecodeDoes) {
  // The video of a run is the VAE decode of its latents: with Y4M (exact, no encoder) the bytes are the same.
  write_embeddings(dir_ / "emb.h5");
  std::string job = kJob;
  job.replace(job.find("dir = \"out\""), 11, "dir = \"out\"\ncodec = \"y4m\"\nfps = 12");
  write("job.toml", job);
  Result r = run(mpirun(2) + " run job.toml");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* id : {"p0000", "boat"}) {
    const std::string video = "out/" + std::string(id) + ".y4m";
    ASSERT_TRUE(fs::exists(dir_ / video)) << id;
    EXPECT_FALSE(fs::exists(dir_ / "out" / (std::string(id) + ".mp4")));
    Result d = run(ditrun() + " vae-decode --vae tiny --in out/" + id + ".latents.h5 --out again.y4m --fps 12");
    ASSERT_EQ(d.code, 0) << d.err;
    const std::string made = slurp(dir_ / video);
    EXPECT_EQ(made.rfind("YUV4MPEG2 W64 H48 F12:1", 0), 0u);
    EXPECT_EQ(made, slurp(dir_ / "again.y4m")) << id;
  }
  // A missing video is what makes a prompt incomplete: only that prompt is redone.
  fs::remove(dir_ / "out" / "boat.y4m");
  Result again = run(mpirun(2) + " run job.toml");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto report = nlohmann::json::parse(slurp(dir_ / "out" / "report.json"));
  for (const auto& p : report["prompts"])
    EXPECT_EQ(p["status"], p["id"] == "boat" ? "done" : "skipped (output exists)") << p.dump();
  EXPECT_TRUE(fs::exists(dir_ / "out" / "boat.y4m"));
}

TEST_F(Cli, RunRejectsABadVaeWithOneLineAndCode2) {
  write_embeddings(dir_ / "emb.h5");
  std::string job = kJob;
  job.replace(job.find("name = \"tiny\""), 13, "name = \"tiny\"\nvae = \"no_such_vae\"");
  write("job.toml", job);
  Result r = run(mpirun(2) + " run job.toml");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(count_lines_with(r.err, "ditrun: error: "), 1) << r.err;
  EXPECT_NE(r.err.find("model.vae"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(Cli, DedicatedVaeRankDecodesWhatTheSharedRoleDecodes) {
  // 2 replicas × cfg 2 on 4 DiT ranks and one dedicated VAE rank that decodes prompt i while the DiT ranks go on:
  // the same videos (Y4M: exact) as the shared role, and a rerun decodes only what is missing.
  write_embeddings(dir_ / "emb.h5");
  std::string job = kJob;
  job.replace(job.find("dir = \"out\""), 11, "dir = \"shared\"\ncodec = \"y4m\"");
  write("shared.toml", job);
  job.replace(job.find("dir = \"shared\""), 14, "dir = \"dedicated\"");
  job.replace(job.find("cfg = 2"), 7, "cfg = 2\nvae_ranks = 1");
  write("dedicated.toml", job);
  ASSERT_EQ(run(mpirun(4) + " run shared.toml").code, 0);
  Result r = run(mpirun(5) + " run dedicated.toml");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("VAE: 1 dedicated"), std::string::npos) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir_ / "dedicated" / "report.json"));
  for (const auto& p : report["prompts"]) {
    EXPECT_EQ(p["status"], "done") << p.dump();
    EXPECT_EQ(p["vae_rank"], 4) << p.dump();  // the VAE rank comes after the DiT ranks
    EXPECT_EQ(p["frames"], 5) << p.dump();
  }
  for (const char* id : {"p0000", "boat"}) {
    const std::string name = std::string(id) + ".y4m";
    ASSERT_TRUE(fs::exists(dir_ / "dedicated" / name)) << id;
    EXPECT_EQ(slurp(dir_ / "dedicated" / name), slurp(dir_ / "shared" / name)) << id;
  }
  fs::remove(dir_ / "dedicated" / "p0000.y4m");
  Result again = run(mpirun(5) + " run dedicated.toml");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto report2 = nlohmann::json::parse(slurp(dir_ / "dedicated" / "report.json"));
  for (const auto& p : report2["prompts"]) {
    EXPECT_EQ(p["status"], p["id"] == "p0000" ? "done" : "skipped (output exists)") << p.dump();
    EXPECT_EQ(p.contains("vae_rank"), p["id"] == "p0000") << p.dump();
  }
  EXPECT_EQ(slurp(dir_ / "dedicated" / "p0000.y4m"), slurp(dir_ / "shared" / "p0000.y4m"));
  // Two dedicated VAE ranks split each frame's rows (halo exchange) and still make the same videos.
  job.replace(job.find("vae_ranks = 1"), 13, "vae_ranks = 2");
  job.replace(job.find("dir = \"dedicated\""), 17, "dir = \"two\"");
  write("two.toml", job);
  Result two = run(mpirun(6) + " run two.toml");
  ASSERT_EQ(two.code, 0) << two.err;
  const auto report3 = nlohmann::json::parse(slurp(dir_ / "two" / "report.json"));
  for (const auto& p : report3["prompts"]) EXPECT_EQ(p["vae_ranks"], 2) << p.dump();
  for (const char* id : {"p0000", "boat"})
    EXPECT_EQ(slurp(dir_ / "two" / (std::string(id) + ".y4m")), slurp(dir_ / "shared" / (std::string(id) + ".y4m")))
        << id;
}

// ------------------------------------------------------------------------------------------------ parallel vae-decode

TEST_F(Cli, VaeDecodeOverTwoAndFourRanksEqualsOneRankAndTheGolden) {
  // The golden latent is [16, 3, 6, 8]: 2 ranks own 3 + 3 latent rows, 4 ranks the uneven 2 + 2 + 1 + 1.
  const std::string golden = std::string(DITRUN_GOLDEN_DIR);
  const std::string args = " vae-decode --vae " + golden + "/tiny_vae --in " + golden + "/vae_decode.h5 --out ";
  Result one = run(ditrun() + args + "f1.h5");
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<int64_t> want_shape, one_shape;
  const auto want = read_dataset(golden + "/vae_decode.h5", "frames", &want_shape);
  const auto single = read_dataset(dir_ / "f1.h5", "frames", &one_shape);
  for (int np : {2, 4}) {
    const std::string out = "f" + std::to_string(np) + ".h5";
    Result r = run(mpirun(np) + args + out);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(count_lines_with(r.out, "vae-decode: "), 1) << r.out;  // rank 0 reports and writes
    EXPECT_NE(r.out.find("with " + std::to_string(np) + " VAE ranks"), std::string::npos) << r.out;
    std::vector<int64_t> shape;
    const auto got = read_dataset(dir_ / out, "frames", &shape);
    ASSERT_EQ(shape, want_shape);
    const double vs_golden = relative_l2(got, want), vs_one = relative_l2(got, single);
    double max_diff = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (const double d = std::abs(double(got[i]) - double(single[i])); d > max_diff) max_diff = d;
    std::printf("vae-decode on %d ranks: relative L2 %.2e vs diffusers, %.2e vs 1 rank (max |diff| %.2e)\n", np,
                vs_golden, vs_one, max_diff);
    EXPECT_LT(vs_golden, 1e-4);
    // The bands see exactly the values one rank sees (halo rows, gathered attention frame) and every output pixel
    // is the same sum in the same order: bit-identical on the CPU.
    EXPECT_EQ(got, single) << np << " ranks";
  }
}

TEST_F(Cli, VaeDecodeOverRanksStreamsTheSameVideoAsOneRank) {
  // Y4M has no encoder state: the bytes are the frames, so the 3-rank video must be the 1-rank video.
  const std::string in = std::string(DITRUN_GOLDEN_DIR) + "/vae_decode.h5";
  ASSERT_EQ(run(ditrun() + " vae-decode --vae tiny --in " + in + " --out one.y4m").code, 0);
  Result r = run(mpirun(3) + " vae-decode --vae tiny --in " + in + " --out three.y4m");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir_ / "three.y4m"), slurp(dir_ / "one.y4m"));
  EXPECT_FALSE(fs::exists(dir_ / "three.y4m.part"));
}

TEST_F(Cli, VaeDecodeRejectsMoreRanksThanLatentRowsWithOneLineAndCode2) {
  {
    std::vector<float> latents(16 * 2 * 1 * 3, 0.25f);  // h = 1 latent row: one rank at most
    ditrun::io::Hdf5File f(dir_ / "thin.h5", ditrun::io::Hdf5File::Mode::write);
    f.write_f32("latents", latents.data(), {16, 2, 1, 3});
  }
  Result r = run(mpirun(2) + " vae-decode --vae tiny --in thin.h5 --out x.h5");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(count_lines_with(r.err, "ditrun: error: "), 1) << r.err;
  EXPECT_NE(r.err.find("latents have 1 rows (h), fewer than the 2 VAE ranks that split them (thin.h5)"),
            std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "x.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "x.h5.part"));
  Result one = run(ditrun() + " vae-decode --vae tiny --in thin.h5 --out x.h5");  // the same input on one rank
  EXPECT_EQ(one.code, 0) << one.err;
}

// ---- ditrun encode-text (issue 6): prompts to the embeddings `ditrun run` reads, through the embedding cache.

TEST_F(Cli, EncodeTextWritesWhatRunReadsAndTheSecondRunHitsTheCache) {
  write("prompts.jsonl",
        "{\"id\": \"fox\", \"prompt\": \"A red fox trots through fresh snow at dawn\"}\n"
        "{\"id\": \"boat\", \"prompt\": \"A sailing boat at dawn\", \"negative_prompt\": \"blurry\", \"seed\": 42}\n");
  Result r = run(ditrun() + " encode-text --model tiny --in prompts.jsonl --out emb.h5 --negative-prompt 'low quality'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("0 cache hits, 4 encoded"), std::string::npos) << r.out;
  {
    ditrun::io::Hdf5File f(dir_ / "emb.h5", ditrun::io::Hdf5File::Mode::read);
    for (const char* name : {"fox/context", "boat/context", "boat/context_null", "negative/context"}) {
      ASSERT_TRUE(f.has(name)) << name;
      const auto shape = f.shape(name);
      ASSERT_EQ(shape.size(), 2u);
      EXPECT_GE(shape[0], 1);
      EXPECT_LE(shape[0], 512);
      EXPECT_EQ(shape[1], 64);
    }
    EXPECT_FALSE(f.has("fox/context_null"));  // the default negative is negative/context
  }
  // Another output, the same prompts: everything comes from the cache, the datasets are identical.
  Result again = run(ditrun() + " encode-text --model tiny --in prompts.jsonl --out emb2.h5 --negative-prompt 'low quality'");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("4 cache hits, 0 encoded"), std::string::npos) << again.out;
  {
    ditrun::io::Hdf5File a(dir_ / "emb.h5", ditrun::io::Hdf5File::Mode::read);
    ditrun::io::Hdf5File b(dir_ / "emb2.h5", ditrun::io::Hdf5File::Mode::read);
    for (const char* name : {"fox/context", "boat/context", "boat/context_null", "negative/context"})
      EXPECT_EQ(a.read_f32(name), b.read_f32(name)) << name;
  }
  // A new prompt is the only miss.
  write("more.jsonl", "{\"id\": \"fox\", \"prompt\": \"A red fox trots through fresh snow at dawn\"}\n"
                      "{\"id\": \"owl\", \"prompt\": \"An owl blinks in the moonlight\"}\n");
  Result more = run(ditrun() + " encode-text --model tiny --in more.jsonl --out emb3.h5 --negative-prompt 'low quality'");
  ASSERT_EQ(more.code, 0) << more.err;
  EXPECT_NE(more.out.find("2 cache hits, 1 encoded"), std::string::npos) << more.out;

  // `ditrun run` renders from the file (manifest ids and negative prompts as encoded).
  write("job.toml", R"(
[model]
name = "tiny"
[sampling]
steps = 2
frames = 1
width = 32
height = 32
[output]
dir = "out"
codec = "y4m"
[prompts]
manifest = "prompts.jsonl"
embeddings = "emb.h5"
)");
  Result job = run(ditrun() + " run job.toml");
  ASSERT_EQ(job.code, 0) << job.err << job.out;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "fox.y4m"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "boat.y4m"));
}

TEST_F(Cli, EncodeTextRejectsABadManifestWithOneLineNamingTheLineAndCode2) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"b\", \"prompt\": \"y\"\n", "bad.jsonl:2"},       // invalid JSON
      {"{\"id\": \"a\", \"prompt\": \"x\"}\n\n{\"id\": \"b\"}\n", "bad.jsonl:3"},                        // no prompt
      {"{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}\n", "bad.jsonl:2"},       // duplicate id
      {"{\"id\": \"a\", \"prompt\": \"x\", \"colour\": \"red\"}\n", "bad.jsonl:1"},                       // unknown key
  };
  for (const auto& [text, where] : cases) {
    write("bad.jsonl", text);
    Result r = run(ditrun() + " encode-text --model tiny --in bad.jsonl --out emb.h5");
    EXPECT_EQ(r.code, 2) << text;
    EXPECT_EQ(count_lines_with(r.err, "ditrun: error: "), 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "emb.h5"));
  }
  Result model = run(ditrun() + " encode-text --model no_such_dir --in bad.jsonl --out emb.h5");
  EXPECT_EQ(model.code, 2);
  EXPECT_NE(model.err.find("(--model)"), std::string::npos) << model.err;
  Result missing = run(ditrun() + " encode-text --model tiny --in nothing.jsonl --out emb.h5");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("manifest file does not exist"), std::string::npos) << missing.err;
}

TEST_F(Cli, RunEncodesItsPromptsLikeEncodeTextAndCachesThem) {
  // Without prompts.embeddings the run encodes its prompts with the tiny text encoder: the same latents as a run
  // from encode-text's file; a second job with the same prompts takes every text from the cache.
  std::string job = kJob;
  job.replace(job.find("embeddings = \"emb.h5\"\n"), 22, "");
  write("text.toml", job);
  Result r = run(mpirun(4) + " run text.toml");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir_ / "out" / "report.json"));
  EXPECT_EQ(report["text"]["texts"], 3) << report["text"].dump();  // two prompts and the (empty) negative
  EXPECT_EQ(report["text"]["encoded"], 3);
  write("prompts.jsonl", "{\"id\": \"p0000\", \"prompt\": \"a red fox in snow\"}\n"
                         "{\"id\": \"boat\", \"prompt\": \"a sailing boat at dawn\", \"seed\": 42}\n");
  ASSERT_EQ(run(ditrun() + " encode-text --model tiny --in prompts.jsonl --out emb.h5 --cache none").code, 0);
  std::string from_file = kJob;
  from_file.replace(from_file.find("dir = \"out\""), 11, "dir = \"file\"");
  write("file.toml", from_file);
  ASSERT_EQ(run(mpirun(4) + " run file.toml").code, 0);
  for (const char* id : {"p0000", "boat"}) {
    const std::string name = std::string(id) + ".latents.h5";
    EXPECT_EQ(read_latents(dir_ / "out" / name), read_latents(dir_ / "file" / name)) << id;
  }
  fs::remove_all(dir_ / "out" / "p0000.mp4");
  fs::remove_all(dir_ / "out" / "boat.mp4");
  Result again = run(mpirun(4) + " run text.toml");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto report2 = nlohmann::json::parse(slurp(dir_ / "out" / "report.json"));
  EXPECT_EQ(report2["text"]["cache_hits"], 3) << report2["text"].dump();
  EXPECT_EQ(report2["text"]["encoded"], 0);
}

// A job whose prompts the run encodes itself (tiny text encoder): a cfg pair denoises, three prompts (the last with
// its own negative), Y4M.
const char* kTextJob = R"(
[model]
name = "tiny"
[parallel]
cfg = 2
[sampling]
steps = 6
frames = 5
width = 64
height = 48
[output]
dir = "out"
codec = "y4m"
[prompts]
list = ["a red fox in snow", {id = "boat", prompt = "a sailing boat at dawn", seed = 42},
        {id = "owl", prompt = "an owl blinks in the moonlight", negative_prompt = "blurry"}]
)";

TEST_F(Cli, DedicatedTextRankEncodesTheNextPromptWhileTheDitRanksDenoise) {
  // 2 DiT ranks (a cfg pair) + 1 dedicated text rank: the text rank encodes prompt 1 while prompt 0 denoises and
  // sends each prompt's embeddings to the DiT ranks; the latents are those of the shared role and of a run from
  // encode-text's file, to the bit.
  std::string job = kTextJob;
  job.replace(job.find("cfg = 2"), 7, "cfg = 2\ntext_ranks = 1");
  write("dedicated.toml", job);
  Result r = run(mpirun(3) + " run dedicated.toml --report dedicated.json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("on the dedicated text rank 2, ahead of the DiT ranks"), std::string::npos) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir_ / "dedicated.json"));
  EXPECT_EQ(report["text"]["role"], "dedicated") << report["text"].dump();
  EXPECT_EQ(report["text"]["encoder_ranks"], nlohmann::json::parse("[2]"));
  EXPECT_EQ(report["text"]["texts"], 5);  // three prompts, the default negative (once), the owl's own
  EXPECT_EQ(report["text"]["encoded"], 5);
  const auto& prompts = report["prompts"];
  ASSERT_EQ(prompts.size(), 3u);
  for (const auto& p : prompts) {
    ASSERT_TRUE(p.contains("text")) << p.dump();
    EXPECT_EQ(p["text"]["rank"], 2) << p.dump();
    EXPECT_LE(p["text"]["started_s"].get<double>(), p["text"]["finished_s"].get<double>()) << p.dump();
    EXPECT_LE(p["text"]["finished_s"].get<double>(), p["denoise_started_s"].get<double>()) << p.dump();
  }
  // The overlap: prompt 1's encoding started before prompt 0's denoising finished.
  EXPECT_LT(prompts[1]["text"]["started_s"].get<double>(), prompts[0]["denoise_finished_s"].get<double>())
      << prompts.dump();

  // The shared role on the 2 DiT ranks: the cfg pair's first rank encodes each prompt between prompts.
  std::string shared = kTextJob;
  shared.replace(shared.find("dir = \"out\""), 11, "dir = \"shared\"");
  write("shared.toml", shared);
  Result s = run(mpirun(2) + " run shared.toml");
  ASSERT_EQ(s.code, 0) << s.err;
  const auto shared_report = nlohmann::json::parse(slurp(dir_ / "shared" / "report.json"));
  EXPECT_EQ(shared_report["text"]["role"], "shared");
  EXPECT_EQ(shared_report["text"]["encoded"], 5);
  const auto& sp = shared_report["prompts"];
  ASSERT_EQ(sp.size(), 3u);
  for (size_t i = 0; i < sp.size(); ++i) {
    EXPECT_EQ(sp[i]["text"]["rank"], 0) << sp[i].dump();
    if (i > 0) {  // between prompts: after the previous prompt's denoising
      EXPECT_GE(sp[i]["text"]["started_s"].get<double>(), sp[i - 1]["denoise_finished_s"].get<double>());
    }
  }

  // From a file that encode-text wrote, on the same 2 DiT ranks.
  write("prompts.jsonl",
        "{\"id\": \"p0000\", \"prompt\": \"a red fox in snow\"}\n"
        "{\"id\": \"boat\", \"prompt\": \"a sailing boat at dawn\"}\n"
        "{\"id\": \"owl\", \"prompt\": \"an owl blinks in the moonlight\", \"negative_prompt\": \"blurry\"}\n");
  ASSERT_EQ(run(ditrun() + " encode-text --model tiny --in prompts.jsonl --out emb.h5 --cache none").code, 0);
  std::string from_file = kTextJob;
  from_file.replace(from_file.find("dir = \"out\""), 11, "dir = \"file\"");
  from_file += "embeddings = \"emb.h5\"\n";
  write("file.toml", from_file);
  Result f = run(mpirun(2) + " run file.toml");
  ASSERT_EQ(f.code, 0) << f.err;
  for (const char* id : {"p0000", "boat", "owl"}) {
    const std::string name = std::string(id) + ".latents.h5";
    const auto dedicated_latents = read_latents(dir_ / "out" / name);
    EXPECT_EQ(dedicated_latents, read_latents(dir_ / "shared" / name)) << id;
    EXPECT_EQ(dedicated_latents, read_latents(dir_ / "file" / name)) << id;
  }

  // A rerun redoes only the prompt without its video, and takes its texts from the cache the text rank wrote.
  fs::remove(dir_ / "out" / "boat.y4m");
  Result again = run(mpirun(3) + " run dedicated.toml --report again.json");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto report2 = nlohmann::json::parse(slurp(dir_ / "again.json"));
  for (const auto& p : report2["prompts"]) {
    EXPECT_EQ(p["status"], p["id"] == "boat" ? "done" : "skipped (output exists)") << p.dump();
    EXPECT_EQ(p.contains("text"), p["id"] == "boat") << p.dump();
  }
  EXPECT_EQ(report2["text"]["texts"], 2) << report2["text"].dump();  // the boat and the default negative
  EXPECT_EQ(report2["text"]["cache_hits"], 2);
  EXPECT_EQ(report2["text"]["encoded"], 0);
}

TEST_F(Cli, TwoTextRanksSplitThePromptsAndOneWritesTheCache) {
  // Text ranks 2 and 3 take prompts in turn; rank 3 sends what it encoded to rank 2, the one writer of the cache.
  // Two replicas in the shared role (one encoder each) do the same through the first replica's encoder.
  for (const auto& [name, ranks, parallel] : {std::tuple{"dedicated", 4, "cfg = 2\ntext_ranks = 2"},
                                              std::tuple{"replicas", 4, "cfg = 2\nreplicas = 2"}}) {
    std::string job = kTextJob;
    job.replace(job.find("cfg = 2"), 7, parallel);
    job.replace(job.find("dir = \"out\""), 11, std::string("dir = \"") + name + "\"");
    write(std::string(name) + ".toml", job);
    Result r = run(mpirun(ranks) + " run " + name + ".toml");
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    const auto report = nlohmann::json::parse(slurp(dir_ / name / "report.json"));
    EXPECT_EQ(report["text"]["encoder_ranks"], nlohmann::json::parse(name == std::string("dedicated") ? "[2,3]" : "[0,2]"))
        << name;
    EXPECT_EQ(report["text"]["encoded"], 5) << name << ": " << report["text"].dump();  // the negative once
    std::set<int> encoders;
    for (const auto& p : report["prompts"]) encoders.insert(p["text"]["rank"].get<int>());
    EXPECT_EQ(encoders.size(), 2u) << name;
    for (const char* id : {"p0000", "boat", "owl"}) fs::remove(dir_ / name / (std::string(id) + ".y4m"));
    Result again = run(mpirun(ranks) + " run " + name + ".toml");
    ASSERT_EQ(again.code, 0) << name << ": " << again.err;
    const auto report2 = nlohmann::json::parse(slurp(dir_ / name / "report.json"));
    EXPECT_EQ(report2["text"]["cache_hits"], 5) << name << ": " << report2["text"].dump();
    EXPECT_EQ(report2["text"]["encoded"], 0) << name;
  }
}

TEST_F(Cli, RunRejectsAnUnreadableEmbeddingCacheWithOneLineAndCode2) {
  write("text.toml", kTextJob);
  fs::create_directories(dir_ / "out");
  write("out/text_embedding_cache.h5", "not an HDF5 file");
  Result r = run(mpirun(2) + " run text.toml");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(count_lines_with(r.err, "ditrun: error: "), 1) << r.err;
  EXPECT_NE(r.err.find("embedding cache is not readable"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(out/text_embedding_cache.h5)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out" / "p0000.latents.h5"));
}

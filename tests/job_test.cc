// Job file and prompt manifest: defaults, every key, resolution of paths and seeds, and every error case.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "launcher/input_error.h"
#include "launcher/job.h"
#include "launcher/manifest.h"

namespace ditrun {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("ditrun_job_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

 private:
  fs::path path_;
};

struct Caught {
  bool thrown = false;
  std::string what, where;
};

Caught catch_input_error(const std::function<void()>& f) {
  Caught c;
  try {
    f();
  } catch (const InputError& e) {
    c = {true, e.what(), e.where()};
  }
  return c;
}

::testing::AssertionResult has(const char*, const char*, const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}
#define EXPECT_HAS(text, part) EXPECT_PRED_FORMAT2(has, text, part)

// Expects an InputError whose message holds `what_part` and whose location holds `where_part`, on one line.
#define EXPECT_INPUT_ERROR(stmt, what_part, where_part)            \
  do {                                                             \
    const Caught c_ = catch_input_error([&] { (void)(stmt); });    \
    ASSERT_TRUE(c_.thrown) << "no InputError from " #stmt;         \
    EXPECT_HAS(c_.what, what_part);                                \
    EXPECT_HAS(c_.where, where_part);                              \
    EXPECT_EQ(c_.what.find('\n'), std::string::npos) << c_.what;   \
    EXPECT_EQ(c_.where.find('\n'), std::string::npos) << c_.where; \
  } while (0)

Job parse(const std::string& text) { return parse_job(text, "job.toml"); }

// A valid job with `body` added before the prompts.
std::string with_prompts(const std::string& body) { return body + "\n[prompts]\nlist = [\"a cat\"]\n"; }

std::vector<PromptItem> manifest(const std::string& text, const SamplingParams& d = {}, const std::string& neg = "",
                                 uint64_t base = 0) {
  std::istringstream in(text);
  return parse_manifest(in, "prompts.jsonl", d, neg, base);
}

// Every field on one line, so one comparison checks them all with a readable diff.
std::string fields(const SamplingParams& s) {
  std::ostringstream o;
  o << "steps=" << s.steps << " guidance=" << s.guidance << " shift=" << s.shift << " solver=" << s.solver
    << " frames=" << s.frames << " size=" << s.width << "x" << s.height;
  return o.str();
}
std::string fields(const partition::LayoutRequest& p) {
  std::ostringstream o;
  o << "replicas=" << p.replicas << " cfg=" << p.cfg << " pipefusion=" << p.pipefusion << " ring=" << p.ring
    << " ulysses=" << p.ulysses << " vae=" << p.vae_ranks << " text=" << p.text_ranks;
  return o.str();
}
std::string fields(const OutputSection& out) {
  std::ostringstream o;
  o << "dir=" << out.dir << " codec=" << out.codec << " crf=" << out.crf << " preset=" << out.preset
    << " fps=" << out.fps << " save=";
  for (const std::string& v : out.save) o << v << ",";
  return o.str();
}

TEST(Job, DefaultsFillIn) {
  const Job job = parse("[prompts]\nlist = [\"a cat\", \"a dog\"]\n");
  EXPECT_EQ(job.file, fs::path("job.toml"));
  EXPECT_EQ(job.model.name, "tiny");
  EXPECT_EQ(job.model.backend, "auto");
  EXPECT_EQ(fields(job.parallel), "replicas=0 cfg=1 pipefusion=1 ring=1 ulysses=1 vae=0 text=0");
  EXPECT_EQ(fields(job.sampling), "steps=50 guidance=5 shift=5 solver=unipc frames=81 size=832x480");
  EXPECT_EQ(job.seed, 0u);
  EXPECT_EQ(job.negative_prompt, "");
  EXPECT_EQ(fields(job.output), "dir=out codec=h264 crf=18 preset=medium fps=16 save=");
  EXPECT_TRUE(job.manifest.empty());
  ASSERT_EQ(job.prompts.size(), 2u);
  EXPECT_EQ(job.prompts[0].id, "p0000");
  EXPECT_EQ(job.prompts[1].id, "p0001");
  EXPECT_EQ(job.prompts[1].prompt, "a dog");
  EXPECT_EQ(job.prompts[1].seed, 1u);
  EXPECT_EQ(job.prompts[1].negative_prompt, "");
  EXPECT_EQ(fields(job.prompts[1].sampling), fields(job.sampling));
  EXPECT_EQ(job.prompts[1].source, "job.toml: prompts.list[1]");
}

TEST(Job, EveryKeyRoundTrips) {
  const TempDir dir;
  // Sections as inline tables are plain TOML too.
  const fs::path file = dir.write("jobs/job.toml", R"(
model = {name = "models/wan-1.3b", backend = "cuda"}
parallel = {replicas = 2, cfg = 2, pipefusion = 3, ring = 4, ulysses = 8, vae_ranks = 5, text_ranks = 6}
sampling = {steps = 20, guidance = 6, shift = 3.5, solver = "euler", frames = 33, width = 1280, height = 720, seed = 1000, negative_prompt = "blurry"}
output = {dir = "renders/run1", codec = "y4m", crf = 23, preset = "veryslow", fps = 24, save = ["latents", "embeddings", "frames"]}
prompts = {list = ["a cat"]}
)");
  const Job job = load_job(file);
  EXPECT_EQ(job.file, file);
  EXPECT_EQ(job.model.name, (dir.path() / "jobs/models/wan-1.3b").string());
  EXPECT_EQ(job.model.backend, "cuda");
  EXPECT_EQ(fields(job.parallel), "replicas=2 cfg=2 pipefusion=3 ring=4 ulysses=8 vae=5 text=6");
  EXPECT_EQ(fields(job.sampling), "steps=20 guidance=6 shift=3.5 solver=euler frames=33 size=1280x720");
  EXPECT_EQ(job.seed, 1000u);
  EXPECT_EQ(job.negative_prompt, "blurry");
  // output.dir stays as given, not relative to the job file.
  EXPECT_EQ(fields(job.output),
            "dir=renders/run1 codec=y4m crf=23 preset=veryslow fps=24 save=latents,embeddings,frames,");
  ASSERT_EQ(job.prompts.size(), 1u);
  const PromptItem& p = job.prompts[0];
  EXPECT_EQ(p.seed, 1000u);
  EXPECT_EQ(p.negative_prompt, "blurry");
  EXPECT_EQ(fields(p.sampling), fields(job.sampling));
  EXPECT_EQ(p.source, file.string() + ": prompts.list[0]");
}

// model.gemm_tuning: unset by default (then $DITRUN_GEMM_TUNING decides), a path relative to the job file like the
// model, or "off".
TEST(Job, GemmTuningFile) {
  const TempDir dir;
  EXPECT_EQ(parse("[prompts]\nlist = [\"a\"]\n").model.gemm_tuning, "");
  const fs::path file = dir.write("jobs/job.toml", with_prompts("[model]\ngemm_tuning = \"tuning/h100.txt\""));
  EXPECT_EQ(load_job(file).model.gemm_tuning, (dir.path() / "jobs/tuning/h100.txt").string());
  EXPECT_EQ(parse(with_prompts("[model]\ngemm_tuning = \"/shared/t.txt\"")).model.gemm_tuning, "/shared/t.txt");
  EXPECT_EQ(parse(with_prompts("[model]\ngemm_tuning = \"off\"")).model.gemm_tuning, "off");
  EXPECT_INPUT_ERROR(parse(with_prompts("[model]\ngemm_tuning = \"\"")), "must be a file path or \"off\"",
                     "model.gemm_tuning");
  EXPECT_INPUT_ERROR(parse(with_prompts("[model]\ngemm_tuning = true")), "", "model.gemm_tuning");
}

TEST(Job, ReplicasAutoOrInteger) {
  EXPECT_EQ(parse(with_prompts("[parallel]\nreplicas = \"auto\"")).parallel.replicas, 0);
  EXPECT_EQ(parse(with_prompts("[parallel]\nreplicas = 3")).parallel.replicas, 3);
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nreplicas = 0")), "parallel.replicas",
                     "job.toml: parallel.replicas");
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nreplicas = \"many\"")), "\"auto\"", "parallel.replicas");
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nreplicas = 1.5")), "must be an integer or \"auto\", got float",
                     "parallel.replicas");
}

TEST(Job, ParallelDegreesOnlyTypeChecked) {
  // Range checks belong to partition::resolve_layout.
  EXPECT_EQ(parse(with_prompts("[parallel]\ncfg = 3")).parallel.cfg, 3);
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\ncfg = 1.0")), "parallel.cfg must be an integer, got float",
                     "job.toml: parallel.cfg");
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nulysses = \"8\"")),
                     "parallel.ulysses must be an integer, got string", "parallel.ulysses");
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nring = 5000000000")), "out of range", "parallel.ring");
}

TEST(Job, OverlapSwitches) {
  const Job defaults = parse(with_prompts(""));
  EXPECT_TRUE(defaults.ring_overlap);
  EXPECT_FALSE(defaults.ulysses_overlap);
  const Job set = parse(with_prompts("[parallel]\nring_overlap = false\nulysses_overlap = true"));
  EXPECT_FALSE(set.ring_overlap);
  EXPECT_TRUE(set.ulysses_overlap);
  EXPECT_EQ(job_to_json(set)["parallel"]["ulysses_overlap"], true);
  EXPECT_INPUT_ERROR(parse(with_prompts("[parallel]\nulysses_overlap = 1")),
                     "parallel.ulysses_overlap must be true or false, got integer",
                     "job.toml: parallel.ulysses_overlap");
}

TEST(Job, ModelPaths) {
  EXPECT_EQ(parse_job(with_prompts("[model]\nname = \"tiny\""), "/a/b/job.toml").model.name, "tiny");
  EXPECT_EQ(parse_job(with_prompts("[model]\nname = \"../models/wan\""), "/a/b/job.toml").model.name, "/a/models/wan");
  EXPECT_EQ(parse_job(with_prompts("[model]\nname = \"/abs/wan\""), "/a/b/job.toml").model.name, "/abs/wan");
  EXPECT_EQ(parse_job(with_prompts("[model]\nname = \"wan\""), "job.toml").model.name, "wan");
  EXPECT_EQ(parse_job(with_prompts("[model]\nname = \"./tiny\""), "jobs/job.toml").model.name, "jobs/tiny");
  EXPECT_INPUT_ERROR(parse(with_prompts("[model]\nname = \"\"")), "model.name", "job.toml: model.name");
  EXPECT_INPUT_ERROR(parse(with_prompts("[model]\nbackend = \"rocm\"")), "must be one of auto, cpu, cuda, got \"rocm\"",
                     "model.backend");
}

TEST(Job, InlinePromptsIdsSeedsOverrides) {
  const Job job = parse(R"(
[sampling]
seed = 100
steps = 30
negative_prompt = "ugly"
[prompts]
list = [
  "a cat",
  {id = "dog", prompt = "a dog", seed = 7, steps = 20, negative_prompt = "", guidance = 1.0, shift = 2, solver = "euler", frames = 1, width = 16, height = 4096},
  {prompt = "a fox"},
]
)");
  ASSERT_EQ(job.prompts.size(), 3u);
  EXPECT_EQ(job.prompts[0].id, "p0000");
  EXPECT_EQ(job.prompts[0].seed, 100u);
  EXPECT_EQ(fields(job.prompts[0].sampling), "steps=30 guidance=5 shift=5 solver=unipc frames=81 size=832x480");
  EXPECT_EQ(job.prompts[0].negative_prompt, "ugly");
  const PromptItem& dog = job.prompts[1];
  EXPECT_EQ(dog.id, "dog");
  EXPECT_EQ(dog.prompt, "a dog");
  EXPECT_EQ(dog.seed, 7u);
  EXPECT_EQ(dog.negative_prompt, "");
  EXPECT_EQ(fields(dog.sampling), "steps=20 guidance=1 shift=2 solver=euler frames=1 size=16x4096");
  EXPECT_EQ(job.prompts[2].id, "p0002");  // a table without id takes its positional id
  EXPECT_EQ(job.prompts[2].seed, 102u);   // seed + position, even after a prompt with its own seed
  EXPECT_EQ(fields(job.prompts[2].sampling), fields(job.prompts[0].sampling));  // overrides do not leak
}

TEST(Job, ArrayOfTablesPrompts) {
  const Job job = parse("[[prompts.list]]\nid = \"one\"\nprompt = \"x\"\n[[prompts.list]]\nprompt = \"y\"\n");
  ASSERT_EQ(job.prompts.size(), 2u);
  EXPECT_EQ(job.prompts[0].id, "one");
  EXPECT_EQ(job.prompts[1].id, "p0001");
}

// Each case: job text (TOML literal strings keep it free of escapes), part of the message, part of the location.
struct ErrorCase {
  std::string text;
  const char* what;
  const char* where;
};

void expect_job_errors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_INPUT_ERROR(parse(c.text), c.what, c.where);
  }
}

TEST(Job, UnknownKeysAndSections) {
  expect_job_errors({
      {with_prompts("[sampling]\nstepz = 3"), "unknown key \"sampling.stepz\" (allowed: steps, guidance",
       "job.toml: sampling.stepz"},
      {with_prompts("[samplng]\nsteps = 3"), "unknown section [samplng]", "job.toml: samplng"},
      {with_prompts("seed = 3"), "unknown key \"seed\"", "job.toml: seed"},
      {with_prompts("[model.extra]\na = 1"), "unknown key \"model.extra\"", "job.toml: model.extra"},
      {with_prompts("[output]\nformat = 'mp4'"), "unknown key \"output.format\"", "job.toml: output.format"},
      {with_prompts("[parallel]\ntp = 2"), "unknown key \"parallel.tp\"", "job.toml: parallel.tp"},
      {"[prompts]\nlist = ['a']\nfile = 'x'", "unknown key \"prompts.file\"", "job.toml: prompts.file"},
      {"[prompts]\nlist = [{prompt = 'a', stepz = 3}]", "unknown key \"prompts.list[0].stepz\"",
       "job.toml: prompts.list[0].stepz"},
  });
}

TEST(Job, WrongTypes) {
  expect_job_errors({
      {with_prompts("[sampling]\nsteps = '50'"), "sampling.steps must be an integer, got string",
       "job.toml: sampling.steps"},
      {with_prompts("[sampling]\nsteps = 50.0"), "sampling.steps must be an integer, got float", "sampling.steps"},
      {with_prompts("[sampling]\nguidance = '5'"), "sampling.guidance must be a number, got string",
       "job.toml: sampling.guidance"},
      {with_prompts("[sampling]\nsolver = 1"), "sampling.solver must be a string, got integer", "sampling.solver"},
      {with_prompts("[sampling]\nnegative_prompt = false"), "must be a string, got boolean",
       "sampling.negative_prompt"},
      {with_prompts("[sampling]\nseed = 1.5"), "sampling.seed must be an integer", "job.toml: sampling.seed"},
      {with_prompts("model = 'tiny'"), "must be a section [model], got string", "job.toml: model"},
      {with_prompts("[model]\nname = 3"), "model.name must be a string, got integer", "job.toml: model.name"},
      {with_prompts("[output]\nsave = 'latents'"), "output.save must be an array of strings, got string",
       "output.save"},
      {with_prompts("[output]\ncrf = '18'"), "output.crf must be an integer", "job.toml: output.crf"},
      {"[prompts]\nlist = 'a cat'", "prompts.list must be an array", "job.toml: prompts.list"},
      {"[prompts]\nlist = [3]", "prompts.list[0] must be a string or a table, got integer",
       "job.toml: prompts.list[0]"},
      {"[prompts]\nmanifest = 3", "prompts.manifest must be a string", "job.toml: prompts.manifest"},
      {"[prompts]\nlist = [{prompt = 'a', seed = '7'}]", "prompts.list[0].seed must be an integer, got string",
       "job.toml: prompts.list[0].seed"},
      {"[prompts]\nlist = [{prompt = 'a', guidance = true}]", "prompts.list[0].guidance must be a number",
       "prompts.list[0].guidance"},
  });
}

TEST(Job, SyntaxErrorNamesLine) {
  EXPECT_INPUT_ERROR(parse("[model]\nname = \"tiny\"\nbackend = cuda\n"), "invalid TOML", "job.toml:3:");
  EXPECT_INPUT_ERROR(parse("[model]\nname = \"a\"\nname = \"b\"\n"), "invalid TOML", "job.toml:3:");
}

TEST(Job, SamplingRanges) {
  struct Case {
    const char* line;
    const char* message;
  };
  const Case cases[] = {
      {"steps = 0", "sampling.steps must be between 1 and 1000, got 0"},
      {"steps = 1001", "got 1001"},
      {"guidance = -0.5", "sampling.guidance must be a finite number >= 0, got -0.5"},
      {"guidance = nan", "sampling.guidance must be a finite number"},
      {"guidance = inf", "sampling.guidance must be a finite number"},
      {"shift = 0", "sampling.shift must be a finite number > 0, got 0"},
      {"solver = \"ddim\"", "sampling.solver must be \"unipc\" or \"euler\", got \"ddim\""},
      {"frames = 80", "sampling.frames must be 1 + a multiple of 4"},
      {"frames = 0", "sampling.frames must be 1 + a multiple of 4"},
      {"width = 830", "sampling.width must be a multiple of 16 between 16 and 4096, got 830"},
      {"width = 4112", "got 4112"},
      {"height = 0", "sampling.height must be a multiple of 16"},
      {"height = -16", "got -16"},
      {"seed = -1", "sampling.seed must be between 0 and 9223372036854775807"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    const std::string key = std::string("sampling.") + std::string(c.line).substr(0, std::string(c.line).find(' '));
    EXPECT_INPUT_ERROR(parse(with_prompts(std::string("[sampling]\n") + c.line)), c.message, "job.toml: " + key);
  }
  EXPECT_EQ(parse(with_prompts("[sampling]\nguidance = 0\nframes = 1\nsteps = 1000")).sampling.steps, 1000);
  EXPECT_EQ(parse(with_prompts("[sampling]\nseed = 9223372036854775807")).seed, 9223372036854775807u);
}

TEST(Job, OutputRanges) {
  expect_job_errors({
      {with_prompts("[output]\ncrf = 52"), "output.crf must be between 0 and 51, got 52", "job.toml: output.crf"},
      {with_prompts("[output]\ncrf = -1"), "got -1", "job.toml: output.crf"},
      {with_prompts("[output]\nfps = 0"), "output.fps must be between 1 and 240, got 0", "job.toml: output.fps"},
      {with_prompts("[output]\nfps = 241"), "got 241", "output.fps"},
      {with_prompts("[output]\npreset = 'fastest'"), "output.preset must be one of ultrafast", "output.preset"},
      {with_prompts("[output]\ncodec = 'h265'"), "output.codec must be one of h264, y4m, got \"h265\"", "output.codec"},
      {with_prompts("[output]\ndir = ''"), "output.dir must not be empty", "job.toml: output.dir"},
      {with_prompts("[output]\nsave = ['latents', 'latents']"), "lists \"latents\" twice", "job.toml: output.save"},
      {with_prompts("[output]\nsave = ['latents', 'video']"), "output.save[1] must be one of latents, embeddings",
       "job.toml: output.save[1]"},
  });
  EXPECT_EQ(parse(with_prompts("[output]\ncrf = 0\nfps = 240")).output.fps, 240);
}

TEST(Job, PromptsSectionRules) {
  expect_job_errors({
      {"[model]\nname = 'tiny'\n", "missing section [prompts]", "job.toml"},
      {"[prompts]\n", "needs prompts.list or prompts.manifest", "job.toml: prompts"},
      {"[prompts]\nlist = ['a']\nmanifest = 'p.jsonl'", "not both", "job.toml: prompts"},
      {"[prompts]\nlist = []", "prompts.list is empty", "job.toml: prompts.list"},
      {"[prompts]\nmanifest = ''", "prompts.manifest must not be empty", "job.toml: prompts.manifest"},
      {"[prompts]\nlist = [\"  \\t \"]", "prompts.list[0] must not be empty", "job.toml: prompts.list[0]"},
      {"[prompts]\nlist = ['a', {id = 'x'}]", "prompts.list[1] has no \"prompt\"", "job.toml: prompts.list[1]"},
      {"[prompts]\nlist = [{prompt = ' '}]", "prompts.list[0].prompt must not be empty", "prompts.list[0].prompt"},
      {"[prompts]\nlist = [{prompt = 'a', steps = 0}]", "prompts.list[0].steps must be between 1 and 1000",
       "job.toml: prompts.list[0].steps"},
      {"[prompts]\nlist = [{prompt = 'a', frames = 80}]", "prompts.list[0].frames must be 1 + a multiple of 4",
       "prompts.list[0].frames"},
      {"[prompts]\nlist = [{prompt = 'a', id = 'a/b'}]", "prompts.list[0].id must be 1 to 128", "prompts.list[0].id"},
  });
}

TEST(Job, InlineDuplicateIds) {
  EXPECT_INPUT_ERROR(parse("[prompts]\nlist = [{id = \"x\", prompt = \"a\"}, \"b\", {id = \"x\", prompt = \"c\"}]"),
                     "duplicate id \"x\" (first at prompts.list[0])", "job.toml: prompts.list[2]");
  // An explicit id may collide with a positional one.
  EXPECT_INPUT_ERROR(parse("[prompts]\nlist = [{id = \"p0001\", prompt = \"a\"}, \"b\"]"), "duplicate id \"p0001\"",
                     "prompts.list[1]");
}

TEST(Job, SeedOverflowIsAnError) {
  EXPECT_INPUT_ERROR(parse("[sampling]\nseed = 9223372036854775807\n[prompts]\nlist = [\"a\", \"b\"]"), "passes 2^63-1",
                     "prompts.list[1]");
  // A prompt with its own seed needs no derived one.
  const Job job =
      parse("[sampling]\nseed = 9223372036854775807\n[prompts]\nlist = [\"a\", {prompt = \"b\", seed = 1}]");
  EXPECT_EQ(job.prompts[1].seed, 1u);
}

TEST(Job, LoadJobErrors) {
  const TempDir dir;
  EXPECT_INPUT_ERROR(load_job(dir.path() / "missing.toml"), "cannot open job file", "missing.toml");
  EXPECT_INPUT_ERROR(load_job(dir.path()), "is a directory", dir.path().string());
}

TEST(Ids, Charset) {
  EXPECT_EQ(check_prompt_id("a.B_c-9"), "");
  EXPECT_EQ(check_prompt_id("_x"), "");
  EXPECT_EQ(check_prompt_id(std::string(128, 'a')), "");
  EXPECT_NE(check_prompt_id(std::string(129, 'a')), "");
  EXPECT_NE(check_prompt_id(""), "");
  EXPECT_NE(check_prompt_id(".hidden"), "");
  EXPECT_NE(check_prompt_id("-x"), "");
  EXPECT_NE(check_prompt_id("a b"), "");
  EXPECT_NE(check_prompt_id("a/b"), "");
  EXPECT_NE(check_prompt_id("caf\xc3\xa9"), "");
}

TEST(Manifest, ParsesLinesWithDefaultsSeedsAndOverrides) {
  SamplingParams d;
  d.steps = 30;
  const auto items = manifest(
      "{\"id\": \"a\", \"prompt\": \"a cat\"}\n"
      "\n"
      "   \t\r\n"
      "{\"id\": \"b\", \"prompt\": \"a dog\", \"seed\": 7, \"steps\": 20, \"guidance\": 1, \"shift\": 3.5,"
      " \"solver\": \"euler\", \"frames\": 5, \"width\": 64, \"height\": 32, \"negative_prompt\": \"dark\"}\r\n"
      "{\"id\": \"c\", \"prompt\": \"a fox\"}\n",
      d, "ugly", 1000);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].id, "a");
  EXPECT_EQ(items[0].prompt, "a cat");
  EXPECT_EQ(items[0].seed, 1000u);
  EXPECT_EQ(items[0].negative_prompt, "ugly");
  EXPECT_EQ(fields(items[0].sampling), "steps=30 guidance=5 shift=5 solver=unipc frames=81 size=832x480");
  EXPECT_EQ(items[0].source, "prompts.jsonl:1");
  const PromptItem& b = items[1];
  EXPECT_EQ(b.seed, 7u);
  EXPECT_EQ(b.negative_prompt, "dark");
  EXPECT_EQ(fields(b.sampling), "steps=20 guidance=1 shift=3.5 solver=euler frames=5 size=64x32");
  EXPECT_EQ(b.source, "prompts.jsonl:4");
  EXPECT_EQ(items[2].seed, 1002u);  // index counts prompt lines only, not blank ones
  EXPECT_EQ(fields(items[2].sampling), fields(items[0].sampling));
  EXPECT_EQ(items[2].source, "prompts.jsonl:5");
}

// Manifest text written with ' for " to keep the cases readable.
std::vector<PromptItem> manifest_q(std::string text) {
  std::replace(text.begin(), text.end(), '\'', '"');
  return manifest(text);
}

TEST(Manifest, LineErrors) {
  const std::pair<std::string, const char*> cases[] = {
      {"{'id': 'a', 'prompt': 'x'}\n{'id': 'b', 'prompt': }\n", "invalid JSON: parse error at column"},
      {"['a']", "must be a JSON object, got array"},
      {"'a cat'", "must be a JSON object, got string"},
      {"{'prompt': 'x'}", "missing \"id\""},
      {"{'id': 'a'}", "missing \"prompt\""},
      {"{'id': 'a', 'prompt': ' \\t '}", "prompt must not be empty"},
      {"{'id': 3, 'prompt': 'x'}", "id must be a string, got number"},
      {"{'id': '.a', 'prompt': 'x'}", "id must be 1 to 128"},
      {"{'id': 'a', 'prompt': ['x']}", "prompt must be a string, got array"},
      {"{'id': 'a', 'prompt': 'x', 'negative_prompt': null}", "negative_prompt must be a string, got null"},
      {"{'id': 'a', 'prompt': 'x', 'steps': 20.5}", "steps must be an integer, got 20.5"},
      {"{'id': 'a', 'prompt': 'x', 'steps': '20'}", "steps must be an integer, got string"},
      {"{'id': 'a', 'prompt': 'x', 'guidance': '5'}", "guidance must be a number, got string"},
      {"{'id': 'a', 'prompt': 'x', 'solver': 1}", "solver must be a string, got number"},
      {"{'id': 'a', 'prompt': 'x', 'seed': -1}", "seed must be between 0 and 9223372036854775807"},
      {"{'id': 'a', 'prompt': 'x', 'seed': 18446744073709551615}", "seed is out of range"},
      {"{'id': 'a', 'prompt': 'x', 'seed': 1e3}", "seed must be an integer"},
      {"{'id': 'a', 'prompt': 'x', 'foo': 1}",
       "unknown key \"foo\" (allowed: id, prompt, negative_prompt, seed, steps"},
      {"{'id': 'a', 'prompt': 'x', 'id': 'b'}", "key \"id\" is given twice"},
      // Per-prompt overrides get the job keys' checks.
      {"{'id': 'a', 'prompt': 'x', 'steps': 0}", "steps must be between 1 and 1000, got 0"},
      {"{'id': 'a', 'prompt': 'x', 'guidance': -1}", "guidance must be a finite number >= 0"},
      {"{'id': 'a', 'prompt': 'x', 'shift': 0}", "shift must be a finite number > 0"},
      {"{'id': 'a', 'prompt': 'x', 'solver': 'dpm'}", "solver must be \"unipc\" or \"euler\""},
      {"{'id': 'a', 'prompt': 'x', 'frames': 82}", "frames must be 1 + a multiple of 4"},
      {"{'id': 'a', 'prompt': 'x', 'frames': 5000000001}", "frames must be 1 + a multiple of 4"},
      {"{'id': 'a', 'prompt': 'x', 'width': 100}", "width must be a multiple of 16"},
      {"{'id': 'a', 'prompt': 'x', 'height': 8192}", "height must be a multiple of 16"},
  };
  for (const auto& [text, what] : cases) {
    SCOPED_TRACE(text);
    // The bad line is the last one; blank lines before it still count.
    const std::string where = text.find('\n') != std::string::npos ? "prompts.jsonl:2" : "prompts.jsonl:3";
    const std::string input = text.find('\n') != std::string::npos ? text : "\n  \n" + text;
    EXPECT_INPUT_ERROR(manifest_q(input), what, where);
  }
}

TEST(Manifest, DuplicateIdsNameBothLines) {
  EXPECT_INPUT_ERROR(manifest("{\"id\": \"a\", \"prompt\": \"x\"}\n\n{\"id\": \"b\", \"prompt\": \"y\"}\n"
                              "{\"id\": \"a\", \"prompt\": \"z\"}\n"),
                     "duplicate id \"a\" (first at line 1)", "prompts.jsonl:4");
}

TEST(Manifest, EmptyIsAnError) {
  EXPECT_INPUT_ERROR(manifest(""), "no prompts", "prompts.jsonl");
  EXPECT_INPUT_ERROR(manifest("\n  \n\t\n"), "no prompts", "prompts.jsonl");
}

TEST(Manifest, SeedOverflowIsAnError) {
  EXPECT_INPUT_ERROR(manifest("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"b\", \"prompt\": \"y\"}\n", {}, "",
                              9223372036854775807ull),
                     "passes 2^63-1", "prompts.jsonl:2");
}

TEST(Manifest, ViaJobFileResolvedAgainstJobDirectory) {
  const TempDir dir;
  dir.write("jobs/data/prompts.jsonl",
            "{\"id\": \"cat\", \"prompt\": \"a cat\"}\n{\"id\": \"dog\", \"prompt\": \"a dog\", \"steps\": 4}\n");
  const fs::path file = dir.write("jobs/job.toml",
                                  "[sampling]\nseed = 50\nsteps = 8\nnegative_prompt = \"n\"\n"
                                  "[prompts]\nmanifest = \"data/prompts.jsonl\"\n");
  const Job job = load_job(file);
  EXPECT_EQ(job.manifest, dir.path() / "jobs/data/prompts.jsonl");
  ASSERT_EQ(job.prompts.size(), 2u);
  EXPECT_EQ(job.prompts[0].id, "cat");
  EXPECT_EQ(job.prompts[0].seed, 50u);
  EXPECT_EQ(job.prompts[0].sampling.steps, 8);
  EXPECT_EQ(job.prompts[0].negative_prompt, "n");
  EXPECT_EQ(job.prompts[1].seed, 51u);
  EXPECT_EQ(job.prompts[1].sampling.steps, 4);
  EXPECT_EQ(job.prompts[1].source, (dir.path() / "jobs/data/prompts.jsonl").string() + ":2");

  // Errors inside the manifest name the manifest file and line.
  dir.write("jobs/data/bad.jsonl", "{\"id\": \"cat\", \"prompt\": \"a cat\"}\n{\"id\": \"cat\", \"prompt\": \"b\"}\n");
  const fs::path bad = dir.write("jobs/bad.toml", "[prompts]\nmanifest = \"data/bad.jsonl\"\n");
  EXPECT_INPUT_ERROR(load_job(bad), "duplicate id \"cat\" (first at line 1)", "data/bad.jsonl:2");

  const fs::path missing = dir.write("jobs/missing.toml", "[prompts]\nmanifest = \"nope.jsonl\"\n");
  EXPECT_INPUT_ERROR(load_job(missing), "cannot open prompt manifest", "nope.jsonl");
}

TEST(JobJson, InlineJob) {
  const Job job = parse(R"(
model = {backend = "cpu"}
parallel = {cfg = 2, ulysses = 4}
sampling = {seed = 9, negative_prompt = "bad"}
output = {save = ["frames"]}
prompts = {list = ["a cat", {id = "dog", prompt = "a dog", steps = 12}]}
)");
  const nlohmann::json j = job_to_json(job);
  EXPECT_EQ(j["file"], "job.toml");
  const auto expect = [](const char* text) { return nlohmann::json::parse(text); };
  EXPECT_EQ(j["model"], expect(R"({"name": "tiny", "backend": "cpu", "vae": "auto", "text_encoder": "auto",
                                  "gemm_tuning": ""})"));
  EXPECT_EQ(j["parallel"], expect(R"({"replicas": "auto", "cfg": 2, "pipefusion": 1, "ring": 1, "ulysses": 4,
                                     "vae_ranks": 0, "text_ranks": 0, "ring_overlap": true,
                                     "ulysses_overlap": false})"));
  EXPECT_EQ(j["sampling"], expect(R"({"steps": 50, "guidance": 5.0, "shift": 5.0, "solver": "unipc", "frames": 81,
                                     "width": 832, "height": 480, "seed": 9, "negative_prompt": "bad"})"));
  EXPECT_EQ(j["output"], expect(R"({"dir": "out", "codec": "h264", "crf": 18, "preset": "medium", "fps": 16,
                                   "save": ["frames"]})"));
  EXPECT_EQ(j["prompts"]["source"], "inline");
  EXPECT_EQ(j["prompts"]["count"], 2);
  ASSERT_EQ(j["prompts"]["items"].size(), 2u);
  EXPECT_EQ(j["prompts"]["items"][1],
            expect(R"({"id": "dog", "prompt": "a dog", "negative_prompt": "bad", "seed": 10, "steps": 12,
                       "guidance": 5.0, "shift": 5.0, "solver": "unipc", "frames": 81, "width": 832, "height": 480})"));
  EXPECT_EQ(j["prompts"]["items"][0]["id"], "p0000");
  EXPECT_EQ(j["prompts"]["items"][0]["seed"], 9);
}

TEST(JobJson, ManifestJobAndFixedReplicas) {
  const TempDir dir;
  dir.write("p.jsonl", "{\"id\": \"x\", \"prompt\": \"y\"}\n");
  const Job job = load_job(dir.write("job.toml", "[parallel]\nreplicas = 4\n[prompts]\nmanifest = \"p.jsonl\"\n"));
  const nlohmann::json j = job_to_json(job);
  EXPECT_EQ(j["parallel"]["replicas"], 4);
  EXPECT_EQ(j["prompts"]["source"], (dir.path() / "p.jsonl").string());
  EXPECT_EQ(j["prompts"]["count"], 1);
  EXPECT_EQ(j["prompts"]["items"][0]["id"], "x");
}

TEST(InputErrorTest, IsOneLine) {
  const InputError e("bad\nthing", "f:1\r");
  EXPECT_EQ(std::string(e.what()), "bad thing");
  EXPECT_EQ(e.where(), "f:1 ");
  // A user value with a newline is escaped, not printed raw.
  EXPECT_INPUT_ERROR(parse("[prompts]\nlist = [{id = \"a\\nb\", prompt = \"x\"}]"), "\"a\\nb\"", "prompts.list[0].id");
}

}  // namespace
}  // namespace ditrun

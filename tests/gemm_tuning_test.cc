// The GEMM tuning file (model/cuda/gemm_tuning_cache.h) on the host: the line format both ways, which entries
// a GPU may use, damaged and foreign files, the merge with other processes' writes and the atomic replace. The
// GPU side (measuring, loading into cuBLASLt) is in cuda_ops_test.cc.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/cuda/gemm_tuning_cache.h"

using namespace ditrun;
using namespace ditrun::cuda;
namespace fs = std::filesystem;

namespace {

GemmDevice h100() { return {"NVIDIA H100 80GB HBM3", 9, 0, 132, 130100}; }

GemmProblem problem(int64_t m, int64_t n, int64_t k, int bias = static_cast<int>(DType::bf16),
                    Epilogue ep = Epilogue::none) {
  return {m, n, k, DType::bf16, DType::bf16, bias, ep, 256, 256, 256, false};
}

GemmTuningEntry entry(const GemmDevice& device, const GemmProblem& p, uint64_t seed) {
  GemmTuningEntry e{device, p, {}, 812.34, 934.5};
  for (size_t i = 0; i < e.algo.size(); ++i) e.algo[i] = seed * 0x9e3779b97f4a7c15ull + i;
  e.algo[7] = ~uint64_t{0};  // every bit of a word survives
  return e;
}

void expect_same(const GemmTuningEntry& a, const GemmTuningEntry& b) {
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.problem, b.problem);
  EXPECT_EQ(a.algo, b.algo);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

class GemmTuningFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("ditrun_gemm_tuning_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(rd()));
    fs::create_directories(dir_);
    file_ = dir_ / "tuning.txt";
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }
  GemmTuningFile::Warn collect() {
    return [this](const std::string& w) { warnings_.push_back(w); };
  }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    return names;
  }

  fs::path dir_, file_;
  std::vector<std::string> warnings_;
};

}  // namespace

TEST(GemmTuningFormat, LineRoundTrip) {
  const GemmProblem problems[] = {
      problem(32760, 5120, 5120),
      problem(1, 1, 1, GemmProblem::kNoBias, Epilogue::gelu_tanh),
      {37, 53, 71, DType::f32, DType::f32, static_cast<int>(DType::f32), Epilogue::gelu_tanh, 4, 8, 2, true},
      {512, 5120, 4096, DType::bf16, DType::f32, GemmProblem::kNoBias, Epilogue::none, 16, 1, 128, false},
  };
  uint64_t seed = 1;
  for (const auto& p : problems) {
    const GemmTuningEntry e = entry(h100(), p, seed++);
    const std::string line = format_tuning_line(e);
    std::string why;
    const auto back = parse_tuning_line(line, &why);
    ASSERT_TRUE(back) << line << ": " << why;
    expect_same(e, *back);
    EXPECT_DOUBLE_EQ(back->tuned_us, 812.3) << "times are kept to 0.1 µs (for people)";
    EXPECT_EQ(format_tuning_line(*back), line);
  }
}

TEST(GemmTuningFormat, LineLooksAsDocumented) {
  const std::string line = format_tuning_line(entry(h100(), problem(32760, 5120, 5120), 3));
  const std::string start = "\"NVIDIA H100 80GB HBM3\" 9.0 132 130100 32760 5120 5120 bf16 bf16 bf16 none 256 256 256 0 ";
  EXPECT_EQ(line.rfind(start, 0), 0u) << line;
  EXPECT_NE(line.find(":ffffffffffffffff 812.3 934.5"), std::string::npos) << line;
}

TEST(GemmTuningFormat, BadLinesAreRefusedWithAReason) {
  const std::string good = format_tuning_line(entry(h100(), problem(8, 16, 32), 5));
  ASSERT_TRUE(parse_tuning_line(good));
  const auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const std::vector<std::string> bad = {
      "",
      "garbage",
      good.substr(0, good.size() / 2),                   // truncated
      good.substr(0, good.rfind(' ')),                   // a time missing
      good + " 1",                                       // extra field
      replaced("\"NVIDIA H100 80GB HBM3\"", "NVIDIA"),   // unquoted name
      replaced("\"NVIDIA H100 80GB HBM3\"", "\"NVIDIA"),  // unterminated name
      replaced(" 9.0 ", " 9 "),
      replaced(" 8 16 32 ", " 8 -16 32 "),
      replaced(" 8 16 32 ", " 8 0 32 "),
      replaced(" bf16 bf16 bf16 ", " bf16 f16 bf16 "),
      replaced(" none ", " relu "),
      replaced(" 256 256 256 ", " 256 96 256 "),          // not a power of two
      replaced(" 256 256 256 0 ", " 256 256 256 2 "),
      replaced(":ffffffffffffffff", ":fffffffffffffff"),  // a short word
      replaced(":ffffffffffffffff", ":fffffffffffffffg"),
      replaced(":ffffffffffffffff", ""),                  // seven words
      replaced(" 812.3 ", " nan "),
      replaced(" 812.3 ", " -1 "),
  };
  for (const auto& line : bad) {
    std::string why;
    EXPECT_FALSE(parse_tuning_line(line, &why)) << line;
    EXPECT_FALSE(why.empty()) << line;
  }
}

TEST(GemmTuningFormat, TextKeepsGoodLinesAroundBadOnes) {
  const auto a = entry(h100(), problem(8, 16, 32), 1), b = entry(h100(), problem(9, 16, 32), 2);
  const std::string text = std::string(kGemmTuningHeader) + "\n# comment\n\n" + format_tuning_line(a) +
                           "\nnot an entry\n" + format_tuning_line(b) + "\r\n" +
                           format_tuning_line(a).substr(0, 40);  // truncated last line, no newline
  const ParsedTuningText parsed = parse_tuning_text(text);
  EXPECT_TRUE(parsed.ours);
  ASSERT_EQ(parsed.entries.size(), 2u);
  expect_same(parsed.entries[0], a);
  expect_same(parsed.entries[1], b);
  EXPECT_EQ(parsed.bad_lines, 2);
  EXPECT_EQ(parsed.first_bad.rfind("line 5: ", 0), 0u) << parsed.first_bad;

  EXPECT_TRUE(parse_tuning_text("").ours);
  EXPECT_FALSE(parse_tuning_text("[model]\nname = \"tiny\"\n").ours);
  EXPECT_FALSE(parse_tuning_text("ditrun gemm tuning v2\n" + format_tuning_line(a) + "\n").ours);
  const ParsedTuningText again = parse_tuning_text(format_tuning_text({a, b}));
  EXPECT_TRUE(again.ours);
  EXPECT_EQ(again.entries.size(), 2u);
  EXPECT_EQ(again.bad_lines, 0);
}

TEST_F(GemmTuningFileTest, EntriesAreFoundOnlyForTheSameGpuAndLibrary) {
  const GemmProblem p = problem(32760, 5120, 5120);
  {
    GemmTuningFile file(file_, collect());
    EXPECT_EQ(file.size(), 0u);
    file.add(entry(h100(), p, 1));
  }
  GemmTuningFile file(file_, collect());
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
  ASSERT_NE(file.find(h100(), p), nullptr);
  EXPECT_EQ(file.find(h100(), p)->algo, entry(h100(), p, 1).algo);

  GemmDevice other = h100();
  other.gpu = "NVIDIA H200";
  EXPECT_EQ(file.find(other, p), nullptr);
  other = h100();
  other.cublaslt_version = 130200;
  EXPECT_EQ(file.find(other, p), nullptr);
  other = h100();
  other.sms = 16;  // a MIG slice
  EXPECT_EQ(file.find(other, p), nullptr);
  other = h100();
  other.cc_minor = 1;
  EXPECT_EQ(file.find(other, p), nullptr);

  GemmProblem q = p;
  q.align_x = 128;
  EXPECT_EQ(file.find(h100(), q), nullptr);
  q = p;
  q.epilogue = Epilogue::gelu_tanh;
  EXPECT_EQ(file.find(h100(), q), nullptr);
  q = p;
  q.m = 32761;
  EXPECT_EQ(file.find(h100(), q), nullptr);
}

TEST_F(GemmTuningFileTest, WritesMergeWithOtherProcessesAndLeaveNoTemporaryFiles) {
  GemmDevice h200 = h100();
  h200.gpu = "NVIDIA H200";
  const GemmProblem p = problem(100, 200, 300), q = problem(400, 500, 600);
  GemmTuningFile first(file_, collect()), second(file_, collect());  // two ranks, both started on no file
  first.add(entry(h100(), p, 1));
  second.add(entry(h200, q, 2));       // re-reads: keeps first's entry
  second.add(entry(h100(), p, 3));     // first's entry for p stays (first written wins)
  first.add(entry(h100(), q, 4));
  EXPECT_EQ(files(), std::vector<std::string>{"tuning.txt"});
  const ParsedTuningText parsed = parse_tuning_text(read_text(file_));
  ASSERT_TRUE(parsed.ours);
  ASSERT_EQ(parsed.entries.size(), 3u);
  GemmTuningFile third(file_, collect());
  EXPECT_EQ(third.find(h100(), p)->algo, entry(h100(), p, 1).algo);
  EXPECT_EQ(third.find(h200, q)->algo, entry(h200, q, 2).algo);
  EXPECT_EQ(third.find(h100(), q)->algo, entry(h100(), q, 4).algo);
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
}

// Ranks writing one file at the same time: every read sees a whole file (no torn or bad line), no temporary file
// is left, and each entry is the one its writer measured.
TEST_F(GemmTuningFileTest, ConcurrentWritersNeverLeaveATornFile) {
  constexpr int kWriters = 8, kEntries = 20;
  std::vector<pid_t> children;
  for (int w = 0; w < kWriters; ++w) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int torn = 0;
      {
        GemmTuningFile file(file_, [&](const std::string&) { ++torn; });
        for (int i = 0; i < kEntries; ++i) {
          file.add(entry(h100(), problem(w + 1, i + 1, 64), 1000 * w + i));
          const ParsedTuningText seen = parse_tuning_text(read_text(file_));
          if (!seen.ours || seen.bad_lines > 0) ++torn;
        }
      }
      ::_exit(torn == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer saw a torn file or warned";
  }
  EXPECT_EQ(files(), std::vector<std::string>{"tuning.txt"});
  const ParsedTuningText parsed = parse_tuning_text(read_text(file_));
  EXPECT_TRUE(parsed.ours);
  EXPECT_EQ(parsed.bad_lines, 0);
  EXPECT_GE(parsed.entries.size(), static_cast<size_t>(kEntries)) << "at least the last writer's entries";
  for (const auto& e : parsed.entries)
    EXPECT_EQ(e.algo, entry(h100(), e.problem, 1000 * (e.problem.m - 1) + (e.problem.n - 1)).algo);
}

TEST_F(GemmTuningFileTest, EntriesLostToAConcurrentWriteAreWrittenAgainAtTheEnd) {
  const GemmProblem p = problem(100, 200, 300);
  {
    GemmTuningFile file(file_, collect());
    file.add(entry(h100(), p, 1));
    write_text(file_, std::string(kGemmTuningHeader) + "\n");  // another rank's rename without our entry
  }
  GemmTuningFile again(file_, collect());
  EXPECT_NE(again.find(h100(), p), nullptr);
}

// An entry that failed cublasLtMatmulAlgoCheck is measured again, and the new choice replaces it in the file.
TEST_F(GemmTuningFileTest, AMeasurementOfAStoredProblemReplacesItsEntry) {
  const GemmProblem p = problem(100, 200, 300);
  GemmTuningFile(file_, collect()).add(entry(h100(), p, 1));
  {
    GemmTuningFile file(file_, collect());
    ASSERT_NE(file.find(h100(), p), nullptr);
    file.add(entry(h100(), p, 2), /*replace_stored=*/true);
  }
  const ParsedTuningText parsed = parse_tuning_text(read_text(file_));
  ASSERT_EQ(parsed.entries.size(), 1u);
  EXPECT_EQ(parsed.entries[0].algo, entry(h100(), p, 2).algo);
}

TEST_F(GemmTuningFileTest, DamagedFileKeepsItsGoodLinesWithOneWarning) {
  const GemmProblem p = problem(100, 200, 300), q = problem(400, 500, 600), r = problem(7, 8, 9);
  write_text(file_, std::string(kGemmTuningHeader) + "\n" + format_tuning_line(entry(h100(), p, 1)) +
                        "\n\x01\x02 binary junk\n" + format_tuning_line(entry(h100(), q, 2)) + "\n" +
                        format_tuning_line(entry(h100(), r, 3)).substr(0, 60));
  GemmTuningFile file(file_, collect());
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("ignored 2 bad lines (line 3: "), std::string::npos) << warnings_[0];
  EXPECT_NE(file.find(h100(), p), nullptr);
  EXPECT_NE(file.find(h100(), q), nullptr);
  EXPECT_EQ(file.find(h100(), r), nullptr);
  // Measured again and written: the rewrite drops the bad lines.
  file.add(entry(h100(), r, 4));
  const ParsedTuningText parsed = parse_tuning_text(read_text(file_));
  EXPECT_EQ(parsed.entries.size(), 3u);
  EXPECT_EQ(parsed.bad_lines, 0);
}

TEST_F(GemmTuningFileTest, AForeignFileIsNeitherUsedNorOverwritten) {
  const std::string job = "[model]\nname = \"tiny\"\n";
  write_text(file_, job);
  {
    GemmTuningFile file(file_, collect());
    file.add(entry(h100(), problem(1, 2, 3), 1));
  }
  ASSERT_EQ(warnings_.size(), 1u) << "one warning, at load";
  EXPECT_NE(warnings_[0].find("not used and not overwritten"), std::string::npos) << warnings_[0];
  EXPECT_EQ(read_text(file_), job);
  EXPECT_EQ(files(), std::vector<std::string>{"tuning.txt"});
}

TEST_F(GemmTuningFileTest, AFolderThatCannotBeWrittenGivesOneWarning) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only folders";
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  {
    GemmTuningFile file(file_, collect());
    file.add(entry(h100(), problem(1, 2, 3), 1));
    file.add(entry(h100(), problem(4, 5, 6), 2));
    EXPECT_NE(file.find(h100(), problem(4, 5, 6)), nullptr) << "kept in memory for this run";
  }
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("cannot write GEMM tuning file"), std::string::npos) << warnings_[0];
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_TRUE(files().empty());
}

// The same for root, who may write into read-only folders: a folder that cannot be made (a file is in the way).
TEST_F(GemmTuningFileTest, AFolderThatCannotBeMadeGivesOneWarning) {
  write_text(dir_ / "plain", "x");
  {
    GemmTuningFile file(dir_ / "plain" / "tuning.txt", collect());
    file.add(entry(h100(), problem(1, 2, 3), 1));
    file.add(entry(h100(), problem(4, 5, 6), 2));
  }
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("cannot write GEMM tuning file"), std::string::npos) << warnings_[0];
  EXPECT_EQ(files(), std::vector<std::string>{"plain"});
}

TEST_F(GemmTuningFileTest, APathThatIsAFolderGivesOneWarning) {
  GemmTuningFile file(dir_, collect());
  file.add(entry(h100(), problem(1, 2, 3), 1));
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("cannot read GEMM tuning file"), std::string::npos) << warnings_[0];
}

TEST_F(GemmTuningFileTest, MissingFoldersAreCreated) {
  const fs::path nested = dir_ / "a" / "b" / "tuning.txt";
  {
    GemmTuningFile file(nested, collect());
    file.add(entry(h100(), problem(1, 2, 3), 1));
  }
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();
  EXPECT_EQ(parse_tuning_text(read_text(nested)).entries.size(), 1u);
}

TEST(GemmTuningSetting, StartsFromTheEnvironmentAndCanBeSet) {
  // The process-wide setting was read from DITRUN_GEMM_TUNING at first use; ctest runs this without it.
  if (!std::getenv("DITRUN_GEMM_TUNING")) {
    EXPECT_TRUE(gemm_tuning_file().empty());
  }
  set_gemm_tuning_file("/tmp/x.txt");
  EXPECT_EQ(gemm_tuning_file(), fs::path("/tmp/x.txt"));
  set_gemm_tuning_file({});
  EXPECT_TRUE(gemm_tuning_file().empty());
}

// The GEMM tuning file: which cuBLASLt algorithm measured fastest for each GEMM problem on each kind of GPU, so a
// new resolution is measured once and every later run starts with the choice made (issue 7). Pure host code, no
// CUDA: the GPU side (measuring, validating a stored choice) is in gemm.cc; the file logic is tested on any machine.
//
// Format: text, one entry a line, after a versioned first line. Fields are separated by spaces; the GPU name is
// quoted (it has spaces). Comment (#) and blank lines are skipped.
//   ditrun gemm tuning v1
//   "NVIDIA H100 80GB HBM3" 9.0 132 130100 32760 5120 5120 bf16 bf16 bf16 none 256 256 256 0 <algo> 812.3 934.1
// = GPU name, compute capability, SM count, cuBLASLt version (cublasLtGetVersion), then the problem: m n k, input
// and output dtype, bias dtype or none, epilogue (none | gelu_tanh), base alignments of w, x and out (bytes), TF32
// (0 | 1); then the algorithm as the 8 words of cublasLtMatmulAlgo_t (16 hex digits each, ':' between), and the
// measured times (µs) of that choice and of the heuristic's first choice (for people; not used).
//
// The algorithm is stored as its raw words: cublasLt.h documents cublasLtMatmulAlgo_t as "trivially serialized and
// later restored for use with the same version", and that version is part of the key. Rebuilding it from
// attributes (cublasLtMatmulAlgoInit + ALGO_CONFIG_*) would silently drop any configuration field a later
// cuBLASLt adds, giving a different kernel than the one measured. A stored choice is still checked with
// cublasLtMatmulAlgoCheck before use and measured again when the check fails.
//
// Several processes (every rank of a job) may share one file. Each write re-reads the file, keeps what is there
// (the first entry written for a problem wins), adds its own missing entries and replaces the file by a rename of a
// complete temporary file in the same folder: a reader never sees a torn file. Two ranks writing at the same moment
// can drop each other's newest entries; each rank writes again when it is destroyed if its entries are missing, and
// anything still lost is measured again by a later run.
#pragma once
#include <array>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/core/backend.h"

namespace ditrun::cuda {

// One GEMM problem as cuBLASLt sees it: the choice of algorithm depends on all of it.
struct GemmProblem {
  static constexpr int kNoBias = -1;
  int64_t m, n, k;
  DType in, out;
  int bias;  // DType of the bias, or kNoBias
  Epilogue epilogue;
  // Base-pointer alignment (bytes, ≤ 256) of w, x and out: cuBLASLt picks kernels that rely on it.
  uint32_t align_w, align_x, align_out;
  bool tf32;
  auto operator<=>(const GemmProblem&) const = default;
};

// What a stored choice is valid for: the same GPU model, SM count (a MIG slice differs) and cuBLASLt version.
struct GemmDevice {
  std::string gpu;
  int cc_major = 0, cc_minor = 0;
  int sms = 0;
  uint64_t cublaslt_version = 0;
  auto operator<=>(const GemmDevice&) const = default;
};

using GemmAlgoWords = std::array<uint64_t, 8>;  // the bytes of a cublasLtMatmulAlgo_t

struct GemmTuningEntry {
  GemmDevice device;
  GemmProblem problem;
  GemmAlgoWords algo{};
  double tuned_us = 0, heuristic_us = 0;
};

// How the GEMMs of one backend were chosen (tests and benchmarks read it).
struct GemmTuningStats {
  int tuned = 0;     // problems measured in this process
  int loaded = 0;    // problems whose choice came from the tuning file (and passed cublasLtMatmulAlgoCheck)
  int rejected = 0;  // entries of the file for this GPU that failed the check (then measured again)
  int deferred = 0;  // problems first met during graph capture or with out overlapping an input: the heuristic's
                     // choice until a later call can measure
  double tuning_ms = 0;  // host time spent measuring
};

inline constexpr std::string_view kGemmTuningHeader = "ditrun gemm tuning v1";

std::string format_tuning_line(const GemmTuningEntry& entry);
// The entry of one line, or nullopt with the reason in `why`.
std::optional<GemmTuningEntry> parse_tuning_line(std::string_view line, std::string* why = nullptr);

struct ParsedTuningText {
  bool ours = false;  // starts with kGemmTuningHeader (an empty text counts as ours: a new file)
  std::vector<GemmTuningEntry> entries;
  int bad_lines = 0;
  std::string first_bad;  // "line 7: <reason>"
};
ParsedTuningText parse_tuning_text(std::string_view text);
std::string format_tuning_text(const std::vector<GemmTuningEntry>& entries);

// One tuning file as a process uses it: loaded at construction, written after each new measurement. Never throws
// for the file's sake: an unreadable or foreign file, bad lines, or a folder that cannot be written each give one
// warning line (through `warn`) and the GEMMs carry on.
class GemmTuningFile {
 public:
  using Warn = std::function<void(const std::string&)>;
  // Default warn: "ditrun: warning: ..." on stderr.
  explicit GemmTuningFile(std::filesystem::path path, Warn warn_to = {});
  ~GemmTuningFile();  // writes entries of this process that the file lacks
  GemmTuningFile(const GemmTuningFile&) = delete;
  GemmTuningFile& operator=(const GemmTuningFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The stored entry for (device, problem), or null.
  const GemmTuningEntry* find(const GemmDevice& device, const GemmProblem& problem) const;
  // A new measurement: kept, and the file written (merged with what other processes wrote meanwhile). The file's
  // entry for the same problem is kept unless `replace_stored` (it failed cublasLtMatmulAlgoCheck here).
  void add(const GemmTuningEntry& entry, bool replace_stored = false);
  // Writes this process's entries that the file lacks; false when it could not (warned once).
  bool save();
  size_t size() const { return entries_.size(); }

 private:
  using Key = std::pair<GemmDevice, GemmProblem>;
  // Reads the file into `parsed`; false when it exists but cannot be read.
  bool read(ParsedTuningText& parsed, std::string& error) const;
  void warn(const std::string& what);

  std::filesystem::path path_;
  Warn warn_;
  std::map<Key, GemmTuningEntry> entries_;  // the file's and ours
  std::vector<GemmTuningEntry> ours_;       // measured by this process
  std::set<Key> replaces_;                  // ours that replace the stored entry
  bool writable_ = true;                    // false after a failed write or when the file is not ours
};

// The tuning file that CUDA backends created from now on use; empty = tuning off (cuBLASLt's heuristic choice, as
// before). Starts as $DITRUN_GEMM_TUNING; the launcher sets it from the job file or the command line.
void set_gemm_tuning_file(const std::filesystem::path& file);
std::filesystem::path gemm_tuning_file();

}  // namespace ditrun::cuda

#include "model/cuda/gemm_tuning_cache.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <system_error>

namespace ditrun::cuda {

namespace {

// ---- fields of a line

std::string_view next_token(std::string_view& rest) {
  const size_t begin = rest.find_first_not_of(" \t");
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  const size_t end = rest.find_first_of(" \t");
  const std::string_view token = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  return token;
}

template <typename T>
bool parse_number(std::string_view s, T& value, int base = 10) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_double(std::string_view s, double& value) {
  // from_chars for double is missing in some standard libraries still in use; strtod on a copy.
  const std::string copy(s);
  char* end = nullptr;
  errno = 0;
  value = std::strtod(copy.c_str(), &end);
  return !copy.empty() && errno == 0 && end == copy.c_str() + copy.size() && std::isfinite(value) && value >= 0;
}

bool parse_dtype(std::string_view s, DType& t) {
  if (s == "bf16") t = DType::bf16;
  else if (s == "f32") t = DType::f32;
  else return false;
  return true;
}

std::string_view epilogue_name(Epilogue e) { return e == Epilogue::gelu_tanh ? "gelu_tanh" : "none"; }

bool power_of_two_upto_256(uint32_t a) { return a >= 1 && a <= 256 && (a & (a - 1)) == 0; }

std::string hex_word(uint64_t w) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(w));
  return buf;
}

// GPU names have no quotes or line breaks; should one ever, it must not break the line format.
std::string quotable(std::string s) {
  for (char& c : s)
    if (c == '"' || c == '\n' || c == '\r') c = '_';
  return s;
}

std::string format_us(double us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", us);
  return buf;
}

}  // namespace

std::string format_tuning_line(const GemmTuningEntry& e) {
  const GemmProblem& p = e.problem;
  std::string algo;
  for (size_t i = 0; i < e.algo.size(); ++i) {
    if (i > 0) algo += ':';
    algo += hex_word(e.algo[i]);
  }
  std::ostringstream line;
  line << '"' << quotable(e.device.gpu) << "\" " << e.device.cc_major << '.' << e.device.cc_minor << ' '
       << e.device.sms << ' ' << e.device.cublaslt_version << ' ' << p.m << ' ' << p.n << ' ' << p.k << ' '
       << dtype_name(p.in) << ' ' << dtype_name(p.out) << ' '
       << (p.bias == GemmProblem::kNoBias ? std::string_view("none") : dtype_name(static_cast<DType>(p.bias))) << ' '
       << epilogue_name(p.epilogue) << ' ' << p.align_w << ' ' << p.align_x << ' ' << p.align_out << ' '
       << (p.tf32 ? 1 : 0) << ' ' << algo << ' ' << format_us(e.tuned_us) << ' ' << format_us(e.heuristic_us);
  return line.str();
}

std::optional<GemmTuningEntry> parse_tuning_line(std::string_view line, std::string* why) {
  const auto bad = [&](const std::string& reason) -> std::optional<GemmTuningEntry> {
    if (why) *why = reason;
    return std::nullopt;
  };
  GemmTuningEntry e;
  // "GPU name"
  const size_t open = line.find_first_not_of(" \t");
  if (open == std::string_view::npos || line[open] != '"') return bad("no quoted GPU name");
  const size_t close = line.find('"', open + 1);
  if (close == std::string_view::npos) return bad("unterminated GPU name");
  e.device.gpu = std::string(line.substr(open + 1, close - open - 1));
  if (e.device.gpu.empty()) return bad("empty GPU name");
  std::string_view rest = line.substr(close + 1);

  const std::string_view cc = next_token(rest);
  const size_t dot = cc.find('.');
  if (dot == std::string_view::npos || !parse_number(cc.substr(0, dot), e.device.cc_major) ||
      !parse_number(cc.substr(dot + 1), e.device.cc_minor) || e.device.cc_major <= 0 || e.device.cc_minor < 0)
    return bad("bad compute capability \"" + std::string(cc) + "\"");
  if (!parse_number(next_token(rest), e.device.sms) || e.device.sms <= 0) return bad("bad SM count");
  if (!parse_number(next_token(rest), e.device.cublaslt_version) || e.device.cublaslt_version == 0)
    return bad("bad cuBLASLt version");

  GemmProblem& p = e.problem;
  if (!parse_number(next_token(rest), p.m) || !parse_number(next_token(rest), p.n) ||
      !parse_number(next_token(rest), p.k) || p.m <= 0 || p.n <= 0 || p.k <= 0)
    return bad("bad m n k");
  if (!parse_dtype(next_token(rest), p.in) || !parse_dtype(next_token(rest), p.out)) return bad("bad dtype");
  const std::string_view bias = next_token(rest);
  DType bias_type{};
  if (bias == "none") p.bias = GemmProblem::kNoBias;
  else if (parse_dtype(bias, bias_type)) p.bias = static_cast<int>(bias_type);
  else return bad("bad bias \"" + std::string(bias) + "\"");
  const std::string_view epilogue = next_token(rest);
  if (epilogue == "none") p.epilogue = Epilogue::none;
  else if (epilogue == "gelu_tanh") p.epilogue = Epilogue::gelu_tanh;
  else return bad("bad epilogue \"" + std::string(epilogue) + "\"");
  for (uint32_t* align : {&p.align_w, &p.align_x, &p.align_out})
    if (!parse_number(next_token(rest), *align) || !power_of_two_upto_256(*align)) return bad("bad alignment");
  const std::string_view tf32 = next_token(rest);
  if (tf32 != "0" && tf32 != "1") return bad("bad tf32 flag");
  p.tf32 = tf32 == "1";

  std::string_view algo = next_token(rest);
  for (size_t i = 0; i < e.algo.size(); ++i) {
    const std::string_view word = algo.substr(0, 16);
    if (word.size() != 16 || !parse_number(word, e.algo[i], 16)) return bad("bad algorithm words");
    algo.remove_prefix(16);
    if (i + 1 < e.algo.size()) {
      if (algo.empty() || algo[0] != ':') return bad("bad algorithm words");
      algo.remove_prefix(1);
    }
  }
  if (!algo.empty()) return bad("bad algorithm words");
  if (!parse_double(next_token(rest), e.tuned_us) || !parse_double(next_token(rest), e.heuristic_us))
    return bad("bad times");
  if (!next_token(rest).empty()) return bad("extra fields");
  return e;
}

ParsedTuningText parse_tuning_text(std::string_view text) {
  ParsedTuningText parsed;
  int number = 0;
  bool header_seen = false;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!header_seen) {
      // The first line decides whether this is our file at all: a foreign file is neither used nor overwritten.
      header_seen = true;
      parsed.ours = line == kGemmTuningHeader;
      if (!parsed.ours) return parsed;
      continue;
    }
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    std::string why;
    if (auto entry = parse_tuning_line(line, &why)) {
      parsed.entries.push_back(std::move(*entry));
    } else {
      if (parsed.bad_lines++ == 0) parsed.first_bad = "line " + std::to_string(number) + ": " + why;
    }
  }
  if (!header_seen) parsed.ours = true;  // empty: a new file
  return parsed;
}

std::string format_tuning_text(const std::vector<GemmTuningEntry>& entries) {
  std::string text(kGemmTuningHeader);
  text +=
      "\n# gpu cc sms cublaslt | m n k in out bias epilogue align_w align_x align_out tf32 | algo words | tuned_us "
      "heuristic_us\n";
  for (const auto& e : entries) text += format_tuning_line(e) + "\n";
  return text;
}

// ---- the file

GemmTuningFile::GemmTuningFile(std::filesystem::path path, Warn warn_to)
    : path_(std::move(path)), warn_(std::move(warn_to)) {
  ParsedTuningText parsed;
  std::string error;
  if (!read(parsed, error)) {
    writable_ = false;  // what cannot be read is not replaced either
    warn("cannot read GEMM tuning file " + path_.string() + " (" + error + "): not used and not overwritten");
    return;
  }
  if (!parsed.ours) {
    writable_ = false;
    warn("GEMM tuning file " + path_.string() + " does not start with \"" + std::string(kGemmTuningHeader) +
         "\": not used and not overwritten");
    return;
  }
  if (parsed.bad_lines > 0)
    warn("GEMM tuning file " + path_.string() + ": ignored " + std::to_string(parsed.bad_lines) + " bad line" +
         (parsed.bad_lines == 1 ? "" : "s") + " (" + parsed.first_bad + ")");
  for (auto& e : parsed.entries) entries_.emplace(Key{e.device, e.problem}, e);  // the first of duplicates wins
}

GemmTuningFile::~GemmTuningFile() {
  try {
    save();
  } catch (...) {  // out of memory in a destructor: the entries are lost, a later run measures them again
  }
}

void GemmTuningFile::warn(const std::string& what) {
  if (warn_)
    warn_(what);
  else
    std::fprintf(stderr, "ditrun: warning: %s\n", what.c_str());
}

bool GemmTuningFile::read(ParsedTuningText& parsed, std::string& error) const {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) {
    parsed = parse_tuning_text({});
    return true;
  }
  if (std::filesystem::is_directory(path_, ec)) {
    error = "it is a folder";
    return false;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    error = std::strerror(errno);
    return false;
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) {
    error = "read error";
    return false;
  }
  parsed = parse_tuning_text(text);
  return true;
}

const GemmTuningEntry* GemmTuningFile::find(const GemmDevice& device, const GemmProblem& problem) const {
  auto it = entries_.find(Key{device, problem});
  return it == entries_.end() ? nullptr : &it->second;
}

void GemmTuningFile::add(const GemmTuningEntry& entry, bool replace_stored) {
  const Key key{entry.device, entry.problem};
  entries_.insert_or_assign(key, entry);
  if (replace_stored) replaces_.insert(key);
  ours_.push_back(entry);
  save();
}

bool GemmTuningFile::save() {
  if (ours_.empty()) return true;
  if (!writable_) return false;
  // Re-read: other ranks may have written since we loaded. Their entries are kept, ours only added where missing.
  ParsedTuningText on_disk;
  std::string error;
  if (!read(on_disk, error)) {
    writable_ = false;
    warn("cannot read GEMM tuning file " + path_.string() + " before writing it (" + error +
         "): this run's measurements are not kept");
    return false;
  }
  if (!on_disk.ours) {
    writable_ = false;
    warn("GEMM tuning file " + path_.string() + " was replaced by a file that is not one: not overwritten");
    return false;
  }
  std::map<Key, size_t> present;  // index in merged
  std::vector<GemmTuningEntry> merged = on_disk.entries;
  for (size_t i = 0; i < merged.size(); ++i) {
    const Key key{merged[i].device, merged[i].problem};
    present.emplace(key, i);
    entries_.emplace(key, merged[i]);  // others' choices, usable by problems not yet met
  }
  bool changed = false;
  for (const auto& e : ours_) {
    const Key key{e.device, e.problem};
    if (auto [it, fresh] = present.emplace(key, merged.size()); fresh) {
      merged.push_back(e);
      changed = true;
    } else if (replaces_.count(key) && merged[it->second].algo != e.algo) {
      merged[it->second] = e;
      changed = true;
    }
  }
  if (!changed) return true;  // nothing of ours missing

  // A complete file under a name of its own in the same folder (same file system), then renamed over the old one:
  // a reader sees the old file or the new one, never a part.
  const std::string text = format_tuning_text(merged);
  std::filesystem::path temp;
  const auto fail = [&](const std::string& why) {
    writable_ = false;
    if (!temp.empty()) std::remove(temp.c_str());
    warn("cannot write GEMM tuning file " + path_.string() + " (" + why + "): this run's measurements are not kept");
    return false;
  };
  std::error_code ec;
  const std::filesystem::path folder = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(folder, ec);
  if (ec) return fail(ec.message());
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  temp = folder / ("." + path_.filename().string() + "." + host + "." + std::to_string(getpid()) + ".tmp");
  FILE* f = std::fopen(temp.c_str(), "wb");
  if (!f) {
    const std::string why = std::strerror(errno);
    temp.clear();  // nothing was created
    return fail(why);
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                       fsync(fileno(f)) == 0;
  const std::string write_error = std::strerror(errno);
  if (std::fclose(f) != 0 || !written) return fail(written ? std::strerror(errno) : write_error);
  if (std::rename(temp.c_str(), path_.c_str()) != 0) return fail(std::strerror(errno));
  return true;
}

// ---- the process-wide setting

namespace {

struct TuningFileSetting {
  std::mutex mutex;
  std::filesystem::path file;
  TuningFileSetting() {
    if (const char* env = std::getenv("DITRUN_GEMM_TUNING")) file = env;
  }
};

TuningFileSetting& tuning_file_setting() {
  static TuningFileSetting setting;
  return setting;
}

}  // namespace

void set_gemm_tuning_file(const std::filesystem::path& file) {
  auto& s = tuning_file_setting();
  const std::lock_guard lock(s.mutex);
  s.file = file;
}

std::filesystem::path gemm_tuning_file() {
  auto& s = tuning_file_setting();
  const std::lock_guard lock(s.mutex);
  return s.file;
}

}  // namespace ditrun::cuda

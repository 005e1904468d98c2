#include "launcher/manifest.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace ditrun {

using nlohmann::json;

namespace {

constexpr int64_t kSeedMax = INT64_MAX;

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool is_blank(std::string_view s) {
  for (char c : s)
    if (!is_space(c)) return false;
  return true;
}

std::string allowed_keys() {
  std::string out;
  for (std::string_view k : kPromptKeys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

// nlohmann's message without its "[json.exception...] " tag; the line is always 1 within one manifest line.
std::string json_message(const json::exception& e) {
  std::string m = e.what();
  if (auto end = m.find("] "); m.rfind("[json.exception", 0) == 0 && end != std::string::npos) m.erase(0, end + 2);
  if (auto at = m.find("at line 1, column"); at != std::string::npos) m.replace(at, 17, "at column");
  return m;
}

// Reads one manifest value of `key`, checking its JSON type; throws InputError at `where`.
int64_t read_integer(const json& v, std::string_view key, const std::string& where) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX))
      throw InputError(std::string(key) + " is out of range, got " + v.dump(), where);
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  throw InputError(std::string(key) + " must be an integer, got " + (v.is_number() ? v.dump() : v.type_name()), where);
}

double read_number(const json& v, std::string_view key, const std::string& where) {
  if (!v.is_number()) throw InputError(std::string(key) + " must be a number, got " + v.type_name(), where);
  return v.get<double>();
}

std::string read_string(const json& v, std::string_view key, const std::string& where) {
  if (!v.is_string()) throw InputError(std::string(key) + " must be a string, got " + v.type_name(), where);
  return v.get<std::string>();
}

// Parses one line as a JSON object, refusing a key given twice (nlohmann would silently keep the last).
json parse_line(const std::string& line, const std::string& where) {
  std::set<std::string> seen;
  std::string repeated;
  auto note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
        repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  json obj;
  try {
    obj = json::parse(line, note_keys);
  } catch (const json::exception& e) {
    throw InputError("invalid JSON: " + json_message(e), where);
  }
  if (!obj.is_object())
    throw InputError(std::string("each manifest line must be a JSON object, got ") + obj.type_name(), where);
  if (!repeated.empty()) throw InputError("key " + quote_for_message(repeated) + " is given twice", where);
  return obj;
}

}  // namespace

SamplingKeyType sampling_key_type(std::string_view key) {
  if (key == "steps" || key == "frames" || key == "width" || key == "height") return SamplingKeyType::kInteger;
  if (key == "guidance" || key == "shift") return SamplingKeyType::kNumber;
  if (key == "solver") return SamplingKeyType::kString;
  return SamplingKeyType::kNone;
}

std::string set_sampling_integer(SamplingParams& s, std::string_view key, int64_t v) {
  const std::string got = ", got " + std::to_string(v);
  if (key == "steps") {
    if (v < 1 || v > 1000) return "must be between 1 and 1000" + got;
    s.steps = static_cast<int>(v);
  } else if (key == "frames") {
    // The causal VAE maps 1 + 4k frames to 1 + k latent frames.
    if (v < 1 || v > INT_MAX - 2 || (v - 1) % 4 != 0) return "must be 1 + a multiple of 4 (1, 5, ..., 81, ...)" + got;
    s.frames = static_cast<int>(v);
  } else if (key == "width" || key == "height") {
    // 8x VAE downsampling times the 2x2 patch embedding.
    if (v < 16 || v > 4096 || v % 16 != 0) return "must be a multiple of 16 between 16 and 4096" + got;
    (key == "width" ? s.width : s.height) = static_cast<int>(v);
  } else {
    return "is not an integer sampling key";
  }
  return "";
}

std::string set_sampling_number(SamplingParams& s, std::string_view key, double v) {
  const std::string got = ", got " + format_number(v);
  if (key == "guidance") {
    if (!std::isfinite(v) || v < 0) return "must be a finite number >= 0" + got;
    s.guidance = v;
  } else if (key == "shift") {
    if (!std::isfinite(v) || v <= 0) return "must be a finite number > 0" + got;
    s.shift = v;
  } else {
    return "is not a numeric sampling key";
  }
  return "";
}

std::string set_sampling_string(SamplingParams& s, std::string_view key, const std::string& v) {
  if (key != "solver") return "is not a string sampling key";
  if (v != "unipc" && v != "euler") return "must be \"unipc\" or \"euler\", got " + quote_for_message(v);
  s.solver = v;
  return "";
}

std::string check_prompt_id(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 128 && id[0] != '.' && id[0] != '-';
  for (char c : id)
    ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                c == '-');
  if (ok) return "";
  // The id names the output files, so it must be a safe file name.
  return "must be 1 to 128 characters of A-Z a-z 0-9 . _ - not starting with '.' or '-', got " + quote_for_message(id);
}

std::string check_prompt_text(std::string_view prompt) { return is_blank(prompt) ? "must not be empty" : ""; }

std::string check_seed(int64_t seed) {
  return seed < 0 ? "must be between 0 and 9223372036854775807 (2^63-1), got " + std::to_string(seed) : "";
}

uint64_t derive_seed(uint64_t base, uint64_t index, std::string& problem) {
  problem.clear();
  if (base > static_cast<uint64_t>(kSeedMax) || index > static_cast<uint64_t>(kSeedMax) - base) {
    problem = "default seed " + std::to_string(base) + " + prompt index " + std::to_string(index) +
              " passes 2^63-1; lower sampling.seed or give this prompt its own seed";
    return 0;
  }
  return base + index;
}

std::string quote_for_message(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string cut(s.substr(0, kMax));
  std::string q = json(cut).dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > kMax) q += "...";
  return q;
}

std::vector<PromptItem> parse_manifest(std::istream& in, const std::string& name, const SamplingParams& defaults,
                                       const std::string& negative_prompt, uint64_t base_seed) {
  std::vector<PromptItem> items;
  std::unordered_map<std::string, size_t> first_line;  // id -> line
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    const std::string where = name + ":" + std::to_string(line_no);
    const json obj = parse_line(line, where);

    PromptItem item;
    item.sampling = defaults;
    item.negative_prompt = negative_prompt;
    item.source = where;
    bool has_seed = false;
    for (const auto& [key, value] : obj.items()) {
      if (key == "id") {
        item.id = read_string(value, key, where);
        if (auto p = check_prompt_id(item.id); !p.empty()) throw InputError("id " + p, where);
      } else if (key == "prompt") {
        item.prompt = read_string(value, key, where);
        if (auto p = check_prompt_text(item.prompt); !p.empty()) throw InputError("prompt " + p, where);
      } else if (key == "negative_prompt") {
        item.negative_prompt = read_string(value, key, where);
      } else if (key == "seed") {
        const int64_t seed = read_integer(value, key, where);
        if (auto p = check_seed(seed); !p.empty()) throw InputError("seed " + p, where);
        item.seed = static_cast<uint64_t>(seed);
        has_seed = true;
      } else {
        std::string problem;
        switch (sampling_key_type(key)) {
          case SamplingKeyType::kInteger:
            problem = set_sampling_integer(item.sampling, key, read_integer(value, key, where));
            break;
          case SamplingKeyType::kNumber:
            problem = set_sampling_number(item.sampling, key, read_number(value, key, where));
            break;
          case SamplingKeyType::kString:
            problem = set_sampling_string(item.sampling, key, read_string(value, key, where));
            break;
          case SamplingKeyType::kNone:
            throw InputError("unknown key " + quote_for_message(key) + " (allowed: " + allowed_keys() + ")", where);
        }
        if (!problem.empty()) throw InputError(key + " " + problem, where);
      }
    }
    if (!obj.contains("id")) throw InputError("missing \"id\"", where);
    if (!obj.contains("prompt")) throw InputError("missing \"prompt\"", where);
    if (!has_seed) {
      std::string problem;
      item.seed = derive_seed(base_seed, items.size(), problem);
      if (!problem.empty()) throw InputError(problem, where);
    }
    if (auto [it, fresh] = first_line.emplace(item.id, line_no); !fresh)
      throw InputError(
          "duplicate id " + quote_for_message(item.id) + " (first at line " + std::to_string(it->second) + ")", where);
    items.push_back(std::move(item));
  }
  if (in.bad()) throw InputError("cannot read prompt manifest after line " + std::to_string(line_no), name);
  if (items.empty()) throw InputError("prompt manifest has no prompts", name);
  return items;
}

std::vector<PromptItem> load_manifest(const std::filesystem::path& file, const SamplingParams& defaults,
                                      const std::string& negative_prompt, uint64_t base_seed) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw InputError("prompt manifest is a directory, not a JSONL file", file.string());
  std::ifstream in(file);
  if (!in) throw InputError(std::string("cannot open prompt manifest: ") + std::strerror(errno), file.string());
  return parse_manifest(in, file.string(), defaults, negative_prompt, base_seed);
}

}  // namespace ditrun

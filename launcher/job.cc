#include "launcher/job.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <unordered_map>

#include <toml++/toml.h>

#include "launcher/manifest.h"

namespace ditrun {

namespace {

using Keys = std::initializer_list<std::string_view>;

template <class Range>
std::string join(const Range& keys) {
  std::string out;
  for (std::string_view k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    default: return "nothing";
  }
}

// Typed access to TOML values; every error names the dotted key and the job file.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }
  std::string where(std::string_view key) const { return file_ + ": " + std::string(key); }

  [[noreturn]] void fail(std::string_view key, const std::string& problem) const {
    throw InputError(std::string(key) + " " + problem, where(key));
  }

  // Refuses keys of `t` not in `allowed`; `prefix` is the dotted path of `t` ("sampling", "prompts.list[3]").
  void only_keys(const toml::table& t, std::string_view prefix, Keys allowed) const {
    only_keys<Keys>(t, prefix, allowed);
  }
  template <class Range>
  void only_keys(const toml::table& t, std::string_view prefix, const Range& allowed) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
      const std::string full = std::string(prefix) + "." + std::string(k.str());
      throw InputError("unknown key \"" + full + "\" (allowed: " + join(allowed) + ")", where(full));
    }
  }

  int64_t integer(const toml::node& n, std::string_view key) const {
    if (auto* v = n.as_integer()) return v->get();
    fail(key, std::string("must be an integer, got ") + type_name(n));
  }

  // An integer that must fit `int`; the range proper is checked by whoever owns the setting.
  int int32(const toml::node& n, std::string_view key) const {
    const int64_t v = integer(n, key);
    if (v < INT_MIN || v > INT_MAX) fail(key, "is out of range, got " + std::to_string(v));
    return static_cast<int>(v);
  }

  int int_in(const toml::node& n, std::string_view key, int lo, int hi) const {
    const int64_t v = integer(n, key);
    if (v < lo || v > hi)
      fail(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + std::to_string(v));
    return static_cast<int>(v);
  }

  // Integers are accepted where a float is expected ("guidance = 5").
  double number(const toml::node& n, std::string_view key) const {
    if (auto* v = n.as_floating_point()) return v->get();
    if (auto* v = n.as_integer()) return static_cast<double>(v->get());
    fail(key, std::string("must be a number, got ") + type_name(n));
  }

  std::string string(const toml::node& n, std::string_view key) const {
    if (auto* v = n.as_string()) return v->get();
    fail(key, std::string("must be a string, got ") + type_name(n));
  }

  std::string one_of(const toml::node& n, std::string_view key, Keys choices) const {
    std::string v = string(n, key);
    if (std::find(choices.begin(), choices.end(), v) == choices.end())
      fail(key, "must be one of " + join(choices) + ", got " + quote_for_message(v));
    return v;
  }

  const toml::table* section(const toml::table& root, std::string_view name) const {
    const toml::node* n = root.get(name);
    if (!n) return nullptr;
    if (auto* t = n->as_table()) return t;
    throw InputError(
        "\"" + std::string(name) + "\" must be a section [" + std::string(name) + "], got " + type_name(*n),
        where(name));
  }

 private:
  std::string file_;
};

void read_model(const Reader& r, const toml::table& t, const std::filesystem::path& file, ModelSection& model) {
  r.only_keys(t, "model", {"name", "backend", "vae", "text_encoder", "gemm_tuning"});
  if (auto* n = t.get("name")) {
    model.name = r.string(*n, "model.name");
    if (model.name.empty()) r.fail("model.name", "must be \"tiny\" or a model directory, got \"\"");
  }
  if (auto* n = t.get("backend")) model.backend = r.one_of(*n, "model.backend", {"auto", "cpu", "cuda"});
  if (auto* n = t.get("vae")) {
    model.vae = r.string(*n, "model.vae");
    if (model.vae.empty()) r.fail("model.vae", "must be \"auto\", \"tiny\" or a model directory, got \"\"");
  }
  // A model directory is relative to the job file, so a job and its model can move together.
  const auto relative_to_job = [&](std::string& name) {
    if (name == "tiny" || name == "auto" || name.rfind("random:", 0) == 0) return;
    std::filesystem::path p(name);
    if (p.is_relative()) p = file.parent_path() / p;
    name = p.lexically_normal().string();
  };
  if (auto* n = t.get("text_encoder")) {
    model.text_encoder = r.string(*n, "model.text_encoder");
    if (model.text_encoder.empty())
      r.fail("model.text_encoder", "must be \"auto\", \"tiny\" or a model directory, got \"\"");
  }
  relative_to_job(model.name);
  relative_to_job(model.vae);
  relative_to_job(model.text_encoder);
  // The GEMM tuning file (cuBLASLt algorithms measured per problem, model/cuda/gemm_tuning_cache.h): relative to the
  // job file like the model, so that a job and the tuning it made stay together.
  if (auto* n = t.get("gemm_tuning")) {
    model.gemm_tuning = r.string(*n, "model.gemm_tuning");
    if (model.gemm_tuning.empty()) r.fail("model.gemm_tuning", "must be a file path or \"off\", got \"\"");
    if (model.gemm_tuning != "off" && std::filesystem::path(model.gemm_tuning).is_relative())
      model.gemm_tuning = (file.parent_path() / model.gemm_tuning).lexically_normal().string();
  }
}

void read_parallel(const Reader& r, const toml::table& t, Job& job) {
  partition::LayoutRequest& par = job.parallel;
  r.only_keys(t, "parallel", {"replicas", "cfg", "pipefusion", "ring", "ulysses", "vae_ranks", "text_ranks",
                              "ring_overlap", "ulysses_overlap"});
  const std::pair<std::string_view, bool*> switches[] = {{"ring_overlap", &job.ring_overlap},
                                                         {"ulysses_overlap", &job.ulysses_overlap}};
  for (auto [key, field] : switches)
    if (auto* n = t.get(key)) {
      if (!n->is_boolean())
        r.fail("parallel." + std::string(key), std::string("must be true or false, got ") + type_name(*n));
      *field = n->as_boolean()->get();
    }
  if (auto* n = t.get("replicas")) {
    if (auto* s = n->as_string()) {
      if (s->get() != "auto")
        r.fail("parallel.replicas", "must be an integer >= 1 or \"auto\", got " + quote_for_message(s->get()));
      par.replicas = 0;
    } else if (n->is_integer()) {
      // 0 means "auto" inside LayoutRequest, so it may not be written as a number.
      par.replicas = r.int32(*n, "parallel.replicas");
      if (par.replicas < 1)
        r.fail("parallel.replicas", "must be an integer >= 1 or \"auto\", got " + std::to_string(par.replicas));
    } else {
      r.fail("parallel.replicas", std::string("must be an integer or \"auto\", got ") + type_name(*n));
    }
  }
  // Degrees are range-checked against the world size by partition::resolve_layout.
  const std::pair<std::string_view, int*> degrees[] = {
      {"cfg", &par.cfg},         {"pipefusion", &par.pipefusion}, {"ring", &par.ring},
      {"ulysses", &par.ulysses}, {"vae_ranks", &par.vae_ranks},   {"text_ranks", &par.text_ranks}};
  for (auto [key, field] : degrees)
    if (auto* n = t.get(key)) *field = r.int32(*n, "parallel." + std::string(key));
}

void read_sampling(const Reader& r, const toml::table& t, Job& job) {
  r.only_keys(t, "sampling",
              {"steps", "guidance", "shift", "solver", "frames", "width", "height", "seed", "negative_prompt"});
  for (auto&& [k, n] : t) {
    const std::string key(k.str());
    const std::string full = "sampling." + key;
    std::string problem;
    if (key == "seed") {
      const int64_t seed = r.integer(n, full);
      problem = check_seed(seed);
      job.seed = static_cast<uint64_t>(seed);
    } else if (key == "negative_prompt") {
      job.negative_prompt = r.string(n, full);
    } else if (sampling_key_type(key) == SamplingKeyType::kInteger) {
      problem = set_sampling_integer(job.sampling, key, r.integer(n, full));
    } else if (sampling_key_type(key) == SamplingKeyType::kNumber) {
      problem = set_sampling_number(job.sampling, key, r.number(n, full));
    } else {
      problem = set_sampling_string(job.sampling, key, r.string(n, full));
    }
    if (!problem.empty()) r.fail(full, problem);
  }
}

void read_output(const Reader& r, const toml::table& t, OutputSection& out) {
  r.only_keys(t, "output", {"dir", "codec", "crf", "preset", "fps", "save"});
  if (auto* n = t.get("dir")) {
    out.dir = r.string(*n, "output.dir");
    if (out.dir.empty()) r.fail("output.dir", "must not be empty");
  }
  if (auto* n = t.get("codec")) out.codec = r.one_of(*n, "output.codec", {"h264", "y4m"});
  if (auto* n = t.get("crf")) out.crf = r.int_in(*n, "output.crf", 0, 51);
  if (auto* n = t.get("preset"))
    out.preset =
        r.one_of(*n, "output.preset",
                 {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"});
  if (auto* n = t.get("fps")) out.fps = r.int_in(*n, "output.fps", 1, 240);
  if (auto* n = t.get("save")) {
    const toml::array* a = n->as_array();
    if (!a) r.fail("output.save", std::string("must be an array of strings, got ") + type_name(*n));
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string key = "output.save[" + std::to_string(i) + "]";
      std::string v = r.one_of(*a->get(i), key, {"latents", "embeddings", "frames"});
      if (std::find(out.save.begin(), out.save.end(), v) != out.save.end())
        r.fail("output.save", "lists " + quote_for_message(v) + " twice");
      out.save.push_back(std::move(v));
    }
  }
}

std::string positional_id(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "p%04zu", i);
  return buf;
}

// One entry of prompts.list: a string, or a table with the manifest keys (id optional).
PromptItem read_inline_prompt(const Reader& r, const toml::node& n, size_t i, const Job& job) {
  const std::string path = "prompts.list[" + std::to_string(i) + "]";
  PromptItem item;
  item.id = positional_id(i);
  item.negative_prompt = job.negative_prompt;
  item.sampling = job.sampling;
  item.source = r.where(path);
  bool has_seed = false;
  if (auto* s = n.as_string()) {
    item.prompt = s->get();
    if (auto p = check_prompt_text(item.prompt); !p.empty()) r.fail(path, p);
  } else if (auto* t = n.as_table()) {
    r.only_keys(*t, path, kPromptKeys);
    if (!t->contains("prompt")) r.fail(path, "has no \"prompt\"");
    for (auto&& [k, v] : *t) {
      const std::string key(k.str());
      const std::string full = path + "." + key;
      std::string problem;
      if (key == "id") {
        item.id = r.string(v, full);
        problem = check_prompt_id(item.id);
      } else if (key == "prompt") {
        item.prompt = r.string(v, full);
        problem = check_prompt_text(item.prompt);
      } else if (key == "negative_prompt") {
        item.negative_prompt = r.string(v, full);
      } else if (key == "seed") {
        const int64_t seed = r.integer(v, full);
        problem = check_seed(seed);
        item.seed = static_cast<uint64_t>(seed);
        has_seed = true;
      } else if (sampling_key_type(key) == SamplingKeyType::kInteger) {
        problem = set_sampling_integer(item.sampling, key, r.integer(v, full));
      } else if (sampling_key_type(key) == SamplingKeyType::kNumber) {
        problem = set_sampling_number(item.sampling, key, r.number(v, full));
      } else {
        problem = set_sampling_string(item.sampling, key, r.string(v, full));
      }
      if (!problem.empty()) r.fail(full, problem);
    }
  } else {
    r.fail(path, std::string("must be a string or a table, got ") + type_name(n));
  }
  if (!has_seed) {
    std::string problem;
    item.seed = derive_seed(job.seed, i, problem);
    if (!problem.empty()) throw InputError(problem, item.source);
  }
  return item;
}

void read_prompts(const Reader& r, const toml::table* t, Job& job) {
  if (!t) throw InputError("missing section [prompts]: give prompts.list or prompts.manifest", r.file());
  r.only_keys(*t, "prompts", {"list", "manifest", "embeddings"});
  if (const toml::node* e = t->get("embeddings")) {
    const std::string path = r.string(*e, "prompts.embeddings");
    if (path.empty()) r.fail("prompts.embeddings", "must not be empty");
    std::filesystem::path p(path);  // relative to the job file, like the manifest
    if (p.is_relative()) p = job.file.parent_path() / p;
    job.embeddings = p.lexically_normal();
  }
  const toml::node* list = t->get("list");
  const toml::node* manifest = t->get("manifest");
  if (list && manifest) throw InputError("give prompts.list or prompts.manifest, not both", r.where("prompts"));
  if (!list && !manifest) throw InputError("[prompts] needs prompts.list or prompts.manifest", r.where("prompts"));

  if (manifest) {
    const std::string m = r.string(*manifest, "prompts.manifest");
    if (m.empty()) r.fail("prompts.manifest", "must not be empty");
    // Relative to the job file, like the model directory.
    std::filesystem::path p(m);
    if (p.is_relative()) p = job.file.parent_path() / p;
    job.manifest = p.lexically_normal();
    job.prompts = load_manifest(job.manifest, job.sampling, job.negative_prompt, job.seed);
    return;
  }

  const toml::array* a = list->as_array();
  if (!a) r.fail("prompts.list", std::string("must be an array of strings or tables, got ") + type_name(*list));
  if (a->empty()) r.fail("prompts.list", "is empty");
  std::unordered_map<std::string, size_t> first;  // id -> index in the list
  for (size_t i = 0; i < a->size(); ++i) {
    PromptItem item = read_inline_prompt(r, *a->get(i), i, job);
    if (auto [it, fresh] = first.emplace(item.id, i); !fresh)
      throw InputError(
          "duplicate id " + quote_for_message(item.id) + " (first at prompts.list[" + std::to_string(it->second) + "])",
          item.source);
    job.prompts.push_back(std::move(item));
  }
}

nlohmann::json sampling_json(const SamplingParams& s) {
  return {{"steps", s.steps},   {"guidance", s.guidance}, {"shift", s.shift},  {"solver", s.solver},
          {"frames", s.frames}, {"width", s.width},       {"height", s.height}};
}

}  // namespace

Job parse_job(std::string_view toml_text, const std::filesystem::path& file) {
  const Reader r(file.string());
  toml::table root;
  try {
    root = toml::parse(toml_text, file.string());
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw InputError("invalid TOML: " + std::string(e.description()),
                     file.string() + ":" + std::to_string(at.line) + ":" + std::to_string(at.column));
  }

  const Keys sections = {"model", "parallel", "sampling", "output", "prompts"};
  for (auto&& [k, v] : root) {
    if (std::find(sections.begin(), sections.end(), k.str()) != sections.end()) continue;
    const std::string key(k.str());
    if (v.is_table()) throw InputError("unknown section [" + key + "] (allowed: " + join(sections) + ")", r.where(key));
    throw InputError("unknown key \"" + key + "\" outside any section (sections: " + join(sections) + ")",
                     r.where(key));
  }

  Job job;
  job.file = file;
  if (auto* t = r.section(root, "model")) read_model(r, *t, file, job.model);
  if (auto* t = r.section(root, "parallel")) read_parallel(r, *t, job);
  if (auto* t = r.section(root, "sampling")) read_sampling(r, *t, job);
  if (auto* t = r.section(root, "output")) read_output(r, *t, job.output);
  read_prompts(r, r.section(root, "prompts"), job);
  return job;
}

Job load_job(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw InputError("job file is a directory", file.string());
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(std::string("cannot open job file: ") + std::strerror(errno), file.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError("cannot read job file", file.string());
  return parse_job(text.str(), file);
}

PromptSlice parse_prompt_slice(const std::string& text) {
  const auto bad = [&] {
    return InputError("--prompt-slice must be I/N with 0 <= I < N <= 1000000 (e.g. 0/4), got \"" + text + "\"",
                      "command line");
  };
  const auto number = [&](std::string_view digits) {
    if (digits.empty() || digits.size() > 7 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad();
    return std::stoi(std::string(digits));
  };
  const size_t slash = text.find('/');
  if (slash == std::string::npos) throw bad();
  PromptSlice s;
  s.index = number(std::string_view(text).substr(0, slash));
  s.count = number(std::string_view(text).substr(slash + 1));
  if (s.count < 1 || s.count > 1000000 || s.index >= s.count) throw bad();
  return s;
}

void keep_prompt_slice(Job& job, PromptSlice& slice) {
  const size_t total = job.prompts.size(), n = static_cast<size_t>(slice.count), i = static_cast<size_t>(slice.index);
  slice.total = total;
  slice.first = i * total / n;
  slice.end = (i + 1) * total / n;
  job.prompts = std::vector<PromptItem>(job.prompts.begin() + static_cast<std::ptrdiff_t>(slice.first),
                                        job.prompts.begin() + static_cast<std::ptrdiff_t>(slice.end));
}

nlohmann::json job_to_json(const Job& job) {
  const auto& p = job.parallel;
  nlohmann::json sampling = sampling_json(job.sampling);
  sampling["seed"] = job.seed;
  sampling["negative_prompt"] = job.negative_prompt;

  nlohmann::json items = nlohmann::json::array();
  for (const PromptItem& item : job.prompts) {
    nlohmann::json j = sampling_json(item.sampling);
    j["id"] = item.id;
    j["prompt"] = item.prompt;
    j["negative_prompt"] = item.negative_prompt;
    j["seed"] = item.seed;
    items.push_back(std::move(j));
  }

  return {
      {"file", job.file.string()},
      {"model",
       {{"name", job.model.name},
        {"backend", job.model.backend},
        {"vae", job.model.vae},
        {"text_encoder", job.model.text_encoder},
        {"gemm_tuning", job.model.gemm_tuning}}},
      {"parallel",
       {{"replicas", p.replicas == 0 ? nlohmann::json("auto") : nlohmann::json(p.replicas)},
        {"cfg", p.cfg},
        {"pipefusion", p.pipefusion},
        {"ring", p.ring},
        {"ulysses", p.ulysses},
        {"vae_ranks", p.vae_ranks},
        {"text_ranks", p.text_ranks},
        {"ring_overlap", job.ring_overlap},
        {"ulysses_overlap", job.ulysses_overlap}}},
      {"sampling", sampling},
      {"output",
       {{"dir", job.output.dir},
        {"codec", job.output.codec},
        {"crf", job.output.crf},
        {"preset", job.output.preset},
        {"fps", job.output.fps},
        {"save", job.output.save}}},
      {"prompts",
       {{"source", job.manifest.empty() ? std::string("inline") : job.manifest.string()},
        {"embeddings", job.embeddings.string()},
        {"count", job.prompts.size()},
        {"items", items}}},
  };
}

}  // namespace ditrun

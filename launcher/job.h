// The job file (TOML): model, parallel layout request, sampling defaults, output settings and the prompts.
// README.md ("Job file") lists every key; keep it in step with job.cc and manifest.cc.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "launcher/input_error.h"
#include "partition/layout.h"

namespace ditrun {

struct SamplingParams {
  int steps = 50;
  double guidance = 5.0;
  double shift = 5.0;
  std::string solver = "unipc";
  int frames = 81;
  int width = 832;
  int height = 480;
};

struct PromptItem {
  std::string id;
  std::string prompt;
  std::string negative_prompt;
  uint64_t seed = 0;
  SamplingParams sampling;
  std::string source;  // where it was defined: "job.toml: prompts.list[3]" or "prompts.jsonl:12"
};

struct ModelSection {
  std::string name = "tiny";  // "tiny", "random:<config>[:seed]", or a model directory (resolved against the job
                              // file's directory)
  std::string backend = "auto";
  std::string vae = "auto";   // "auto" (the model's own: tiny, random:wan2.1, or the model folder's vae/),
                              // "tiny", "random:<tiny|wan2.1>[:seed]", or a folder (resolved like name)
  std::string text_encoder = "auto";  // "auto" (tiny, or the model folder's text_encoder/ + tokenizer/), "tiny",
                                      // or a folder; used when prompts.embeddings is not given
  std::string gemm_tuning;  // GEMM tuning file (resolved like name), "off", or "" = not set ($DITRUN_GEMM_TUNING)
};

struct OutputSection {
  std::string dir = "out";  // relative to the working directory, as given
  std::string codec = "h264";
  int crf = 18;
  std::string preset = "medium";
  int fps = 16;
  std::vector<std::string> save;  // any of "latents", "embeddings", "frames"
};

struct Job {
  std::filesystem::path file;  // the job file as given
  ModelSection model;
  partition::LayoutRequest parallel;
  bool ring_overlap = true;      // [parallel] ring_overlap: the K/V exchange beside compute
  bool ulysses_overlap = false;  // [parallel] ulysses_overlap: head-group pipelining of the all-to-alls
  SamplingParams sampling;  // job-wide defaults
  uint64_t seed = 0;
  std::string negative_prompt;  // job-wide default
  OutputSection output;
  std::filesystem::path manifest;   // empty when prompts come inline
  std::filesystem::path embeddings;  // HDF5 file of text embeddings (until the text encoder exists); may be empty
  std::vector<PromptItem> prompts;  // resolved: every field filled in
};

// Reads and parses `file`. Throws InputError.
Job load_job(const std::filesystem::path& file);

// Parses job text; `file` is used in messages and to resolve the model and manifest paths. Throws InputError.
Job parse_job(std::string_view toml_text, const std::filesystem::path& file);

// `ditrun run --prompt-slice I/N`: this run takes the I-th of N contiguous, near-equal blocks of the job's prompts
// (0 <= I < N), so that N runs (the tasks of a Slurm job array) split one manifest with every prompt in exactly one
// block. Slicing happens after ids and seeds are resolved: a prompt's seed and output do not depend on the split.
struct PromptSlice {
  int index = 0;
  int count = 1;
  size_t first = 0, end = 0;  // the prompts kept: [first, end) of the whole list (set by keep_prompt_slice)
  size_t total = 0;           // prompts in the whole job
};

// Parses "I/N". Throws InputError (where: "--prompt-slice").
PromptSlice parse_prompt_slice(const std::string& text);

// Keeps only the slice's prompts in job.prompts and records which they were in `slice`. An empty block (more
// slices than prompts) is allowed: that run has nothing to do.
void keep_prompt_slice(Job& job, PromptSlice& slice);

// The job as resolved, every default filled in (for report.json).
nlohmann::json job_to_json(const Job& job);

}  // namespace ditrun

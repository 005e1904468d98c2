// The subcommands of `ditrun`. Each returns the process exit code: 0 done, 1 runtime failure, 2 bad input.
#pragma once
#include <optional>
#include <string>

namespace ditrun {

struct RunOptions {
  std::string job_file;
  std::string backend;  // overrides model.backend when set: auto | cpu | cuda
  std::string prompt_slice;  // "I/N": only the I-th of N blocks of the prompts (job arrays); empty = all
  std::string report;        // report path; empty = <output.dir>/report.json (report.slice-I-of-N.json when sliced)
  std::string gemm_tuning;   // overrides model.gemm_tuning when set: a file path or "off"
};
// `ditrun run JOB.toml`: collective over all ranks of the launch (mpirun/srun or a single process).
int run_command(const RunOptions& options, int* argc, char*** argv);

struct PlanOptions {
  std::optional<std::string> job_file;  // layout keys come from its [parallel] section
  std::optional<int> gpus;
  int gpus_per_node = 8;
  std::string launch = "block";         // block | cyclic: how the launcher spreads ranks over hosts
  std::optional<int> replicas, cfg, pipefusion, ring, ulysses, vae_ranks, text_ranks;
  bool per_rank = false;
  bool json = false;
};
// `ditrun plan`: the layout of any number of GPUs, without MPI or GPUs.
int plan_command(const PlanOptions& options);

struct DitForwardOptions {
  std::string model;    // tiny | random:<config>[:seed] | model folder
  std::string input;    // in.h5
  std::string output;   // out.h5
  std::string backend = "cpu";
  int cfg = 1, ring = 1, ulysses = 1;  // the layout of the launch's ranks (their product = the rank count)
  std::string gemm_tuning;  // GEMM tuning file, "off", or empty = $DITRUN_GEMM_TUNING
};
// `ditrun dit-forward`: one DiT forward (cpu or cuda), on one process or under mpirun with a layout.
int dit_forward_command(const DitForwardOptions& options, int* argc, char*** argv);

struct VaeDecodeOptions {
  std::string vae;      // tiny | random:<tiny|wan2.1>[:seed] | model or vae/ folder
  std::string input;    // latents.h5
  std::string output;   // .mp4 | .y4m | .h5
  std::string backend = "cpu";
  int fps = 16, crf = 18;
  std::string preset = "medium";
};
// `ditrun vae-decode`: latents to a video (streamed to the encoder) or to frames, on one process.
int vae_decode_command(const VaeDecodeOptions& options, int* argc, char*** argv);

struct EncodeTextOptions {
  std::string model;    // tiny | model folder (text_encoder/ + tokenizer/)
  std::string input;    // prompts.jsonl
  std::string output;   // embeddings.h5
  std::string negative_prompt;  // the default negative (negative/context); manifest lines may set their own
  std::string cache;    // embedding cache file; empty = <output dir>/text_embedding_cache.h5, "none" = no cache
  std::string backend = "cpu";
};
// `ditrun encode-text`: prompts to text embeddings (the layout `ditrun run` reads), through the embedding cache.
int encode_text_command(const EncodeTextOptions& options);

// Prints "ditrun: error: <what> (<where>)" (the one-line form of bad input) on stderr.
void print_input_error(const std::string& what, const std::string& where);

}  // namespace ditrun

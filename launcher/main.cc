// ditrun: renders videos from text with Wan2.1-class diffusion transformers on 1 to 128 GPUs.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "comm/abort.h"
#include "launcher/build_commit.h"
#include "launcher/commands.h"

namespace {

[[noreturn]] void end_job_on_uncaught_exception() {
  std::string reason = "unknown failure";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      reason = ex.what();
    } catch (...) {
    }
  }
  ditrun::comm::abort_job(reason, 1);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ditrun: text-to-video with Wan2.1 diffusion transformers on 1 to 128 GPUs, under mpirun or srun"};
  app.set_version_flag("--version", std::string("ditrun ") + DITRUN_VERSION + " (" + ditrun::build_commit() + ")");
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  mpirun -np 4 ditrun run examples/tiny.toml\n"
      "  srun --mpi=pmix ditrun run job.toml --report reports/$SLURM_JOB_ID.json\n"
      "  srun --mpi=pmix ditrun run job.toml --prompt-slice $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n"
      "      (in a job array submitted with --array=0-(N-1): each task renders its block of the prompts)\n"
      "  ditrun plan --gpus 64 --gpus-per-node 8 --cfg 2 --ulysses 8 --ring 4\n"
      "sbatch templates, job arrays and the scaling sweep: slurm/ (README, \"Slurm\").\n"
      "Exit codes: 0 done, 1 runtime failure, 2 bad input (job file, manifest, layout).");

  ditrun::RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Run a job file (collective over all ranks of the launch)");
  run_cmd->add_option("job", run.job_file, "Job file (TOML)")->required();
  run_cmd->add_option("--backend", run.backend, "Override model.backend: auto | cpu | cuda");
  run_cmd->add_option("--prompt-slice", run.prompt_slice,
                      "I/N: render only the I-th (0-based) of N contiguous blocks of the job's prompts, e.g. a "
                      "Slurm array task's share of a manifest (seeds and outputs do not depend on the split)");
  run_cmd->add_option("--gemm-tuning", run.gemm_tuning,
                      "Override model.gemm_tuning: a GEMM tuning file (cuBLASLt algorithms measured once per shape "
                      "and GPU, kept there for later runs; default $DITRUN_GEMM_TUNING), or off");
  run_cmd->add_option("--report", run.report,
                      "Where to write report.json (default <output.dir>/report.json, or "
                      "<output.dir>/report.slice-I-of-N.json with --prompt-slice)");

  ditrun::PlanOptions plan;
  auto* plan_cmd = app.add_subcommand("plan", "Print the layout of a number of GPUs: roles, mesh, every group's "
                                              "ranks and hosts (no MPI or GPU needed)");
  plan_cmd->add_option("job", plan.job_file, "Job file whose [parallel] section gives the layout");
  plan_cmd->add_option("--gpus", plan.gpus, "Number of GPUs (ranks) to lay out");
  plan_cmd->add_option("--gpus-per-node", plan.gpus_per_node, "GPUs per node")->capture_default_str();
  plan_cmd->add_option("--launch", plan.launch, "How ranks are spread over nodes: block | cyclic (round-robin)")
      ->capture_default_str();
  plan_cmd->add_option("--replicas", plan.replicas, "Model replicas (default: as many as the GPUs allow)");
  plan_cmd->add_option("--cfg", plan.cfg, "CFG-parallel degree: 1 or 2");
  plan_cmd->add_option("--pipefusion", plan.pipefusion, "PipeFusion stages");
  plan_cmd->add_option("--ring", plan.ring, "Ring-attention degree");
  plan_cmd->add_option("--ulysses", plan.ulysses, "Ulysses degree");
  plan_cmd->add_option("--vae-ranks", plan.vae_ranks, "Dedicated VAE ranks (0 = shared with DiT ranks)");
  plan_cmd->add_option("--text-ranks", plan.text_ranks,
                       "Dedicated text-encoder ranks: they encode prompt i+1 while the DiT ranks denoise prompt i "
                       "(0 = shared: each replica's first rank encodes between prompts)");
  plan_cmd->add_flag("--ranks", plan.per_rank, "Also print every rank with its host and roles");
  plan_cmd->add_flag("--json", plan.json, "Print the plan as JSON");

  ditrun::DitForwardOptions forward;
  auto* forward_cmd = app.add_subcommand("dit-forward", "One DiT forward from HDF5 (x, t, context[, context_null]) "
                                                        "to HDF5 (v[, v_null]), for checking against a reference");
  forward_cmd->add_option("--model", forward.model, "tiny | random:<tiny|1.3b|14b>[:seed] | model folder")->required();
  forward_cmd->add_option("--in", forward.input, "Input HDF5 file")->required();
  forward_cmd->add_option("--out", forward.output, "Output HDF5 file (written complete or not at all)")->required();
  forward_cmd->add_option("--backend", forward.backend, "cpu | cuda")->capture_default_str();
  forward_cmd->add_option("--cfg", forward.cfg, "CFG-parallel degree (2 needs context_null)")->capture_default_str();
  forward_cmd->add_option("--ring", forward.ring, "Ring-attention degree")->capture_default_str();
  forward_cmd->add_option("--ulysses", forward.ulysses, "Ulysses degree")->capture_default_str();
  forward_cmd->add_option("--gemm-tuning", forward.gemm_tuning,
                          "GEMM tuning file (cuda: cuBLASLt algorithms measured once per shape and GPU, kept there "
                          "for later runs; default $DITRUN_GEMM_TUNING), or off");

  ditrun::VaeDecodeOptions decode;
  auto* decode_cmd = app.add_subcommand("vae-decode", "Latents (HDF5 `latents` [16,T,h,w], normalised as the DiT "
                                                      "makes them) to a video (.mp4, .y4m) or frames (.h5)");
  decode_cmd->add_option("--vae", decode.vae, "tiny | random:<tiny|wan2.1>[:seed] | model folder with vae/ | vae/ "
                                               "folder")->required();
  decode_cmd->add_option("--in", decode.input, "Input HDF5 file with dataset latents")->required();
  decode_cmd->add_option("--out", decode.output, ".mp4 (H.264, libav), .y4m, or .h5 (frames [3,F,H,W] in [-1,1]); "
                                                 "written complete or not at all")->required();
  decode_cmd->add_option("--backend", decode.backend, "cpu | cuda")->capture_default_str();
  decode_cmd->add_option("--fps", decode.fps, "Frame rate of the video")->capture_default_str();
  decode_cmd->add_option("--crf", decode.crf, "x264 constant rate factor (.mp4)")->capture_default_str();
  decode_cmd->add_option("--preset", decode.preset, "x264 preset (.mp4)")->capture_default_str();

  ditrun::EncodeTextOptions encode_text;
  auto* encode_text_cmd = app.add_subcommand("encode-text", "Prompts (JSONL manifest) to text embeddings (HDF5, the "
                                                            "layout `ditrun run` reads) with the umT5 encoder");
  encode_text_cmd->add_option("--model", encode_text.model, "tiny | model folder (text_encoder/ + tokenizer/)")
      ->required();
  encode_text_cmd->add_option("--in", encode_text.input, "Prompt manifest (JSONL)")->required();
  encode_text_cmd->add_option("--out", encode_text.output, "Output HDF5 file (written complete or not at all)")
      ->required();
  encode_text_cmd->add_option("--negative-prompt", encode_text.negative_prompt,
                              "Default negative prompt (negative/context)");
  encode_text_cmd->add_option("--cache", encode_text.cache, "Embedding cache file (default: "
                                                            "<out dir>/text_embedding_cache.h5; none = off)");
  encode_text_cmd->add_option("--backend", encode_text.backend, "cpu | cuda")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "ditrun: error: %s (command line; see ditrun --help)\n", e.what());
    return 2;
  }

  // A runtime failure escapes uncaught on purpose: with no handler, nothing unwinds (no MPI_Finalize or NCCL
  // destroy that would wait for peers), and the terminate handler ends every rank of the job at once.
  std::set_terminate(end_job_on_uncaught_exception);
  if (*plan_cmd) return ditrun::plan_command(plan);
  if (*forward_cmd) return ditrun::dit_forward_command(forward, &argc, &argv);
  if (*decode_cmd) return ditrun::vae_decode_command(decode, &argc, &argv);
  if (*encode_text_cmd) return ditrun::encode_text_command(encode_text);
  return ditrun::run_command(run, &argc, &argv);
}

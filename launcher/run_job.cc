// `ditrun run`: read and validate the job on every rank, lay out the ranks, build and check every communicator, then
// render: text (launcher/text_role.h), DiT (launcher/denoise.h) and VAE, pipelined across prompts; report.json.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <optional>

#include "comm/abort.h"
#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/mpi_runtime.h"
#include "launcher/build_commit.h"
#include "launcher/commands.h"
#include "launcher/denoise.h"
#include "launcher/embeddings.h"
#include "model/cpu/cpu_backend.h"
#include "model/cuda/gemm_tuning_cache.h"
#include "io/video_writer.h"
#include "model/wan/dit_source.h"
#include "model/text/text_encoder_source.h"
#include "model/wan/vae_source.h"
#include "launcher/input_error.h"
#include "launcher/job.h"
#include "launcher/job_clock.h"
#include "launcher/progress.h"
#include "launcher/prompt_encoder.h"
#include "launcher/report.h"
#include "launcher/text_role.h"
#include "launcher/text_schedule.h"
#include "launcher/video_output.h"
#include "partition/plan.h"
#include "partition/plan_text.h"

namespace ditrun {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// What every rank knows after validation.
struct ValidJob {
  Job job;
  std::optional<partition::Plan> plan;
  wan::DitSource model;
  wan::VaeSource vae;
  std::optional<EmbeddingFile> embeddings;
  std::optional<text::TextEncoderSource> text;  // when the job names no embeddings file: encode its prompts
  std::filesystem::path text_cache;              // then: the embedding cache file in output.dir
  std::optional<PromptSlice> slice;
  std::filesystem::path report;  // where report.json goes
};

// Validation that needs no GPU: job file, prompts, layout against the launch, output folder.
void validate(ValidJob& v, const RunOptions& options, const comm::MpiRuntime& mpi) {
  // The launcher's variables must agree with MPI: else every task of an srun without a working MPI plugin would
  // render the whole job on its own.
  if (!mpi.launch_problem().empty()) throw InputError(mpi.launch_problem(), "launch");
  if (!options.prompt_slice.empty()) v.slice = parse_prompt_slice(options.prompt_slice);
  v.job = load_job(options.job_file);
  // The whole manifest is validated (every task of an array alike); then this run keeps its block.
  if (v.slice) keep_prompt_slice(v.job, *v.slice);
  if (!options.backend.empty()) v.job.model.backend = options.backend;
  if (!options.gemm_tuning.empty()) v.job.model.gemm_tuning = options.gemm_tuning;  // as given: relative to here
  const std::string& backend = v.job.model.backend;
  if (backend != "auto" && backend != "cpu" && backend != "cuda")
    throw InputError("backend must be auto, cpu or cuda, got \"" + backend + "\"", "--backend");
  try {
    v.plan.emplace(partition::make_plan(v.job.parallel, partition::Topology(mpi.hosts())));
  } catch (const partition::LayoutError& e) {
    throw InputError(e.what(), options.job_file + ": " + e.key());
  }
  // Messages between roles carry the prompt's index in their tag (text: 2i and 2i + 1, then two more; latents to
  // the VAE ranks: i): a run's prompts must fit MPI's tag range.
  const auto tags_needed = 2 * static_cast<int64_t>(v.job.prompts.size()) + 2;
  if (tags_needed > mpi.tag_upper_bound())
    throw InputError(std::to_string(v.job.prompts.size()) + " prompts in one run need message tags up to " +
                         std::to_string(tags_needed) + ", more than this MPI allows (" +
                         std::to_string(mpi.tag_upper_bound()) + "): split the run with --prompt-slice I/N",
                     options.job_file + ": prompts");
  const auto& layout = v.plan->layout();
  if (layout.pipefusion > 1)
    throw InputError("PipeFusion is not implemented in this build yet; use replicas, cfg, ring and ulysses",
                     options.job_file + ": parallel.pipefusion");
  try {
    v.model = wan::resolve_dit_source(v.job.model.name);
  } catch (const std::exception& e) {
    throw InputError(e.what(), options.job_file + ": model.name");
  }
  // The VAE: the model's own unless the job names one.
  std::string vae = v.job.model.vae;
  if (vae == "auto") {
    const std::string& name = v.job.model.name;
    if (name == "tiny" || name.rfind("random:tiny", 0) == 0) vae = "tiny";
    else if (name.rfind("random:", 0) == 0) vae = "random:wan2.1";
    else vae = name;  // a Diffusers model root has vae/ beside transformer/
  }
  try {
    v.vae = wan::resolve_vae_source(vae);
  } catch (const std::exception& e) {
    throw InputError(std::string(e.what()) + (v.job.model.vae == "auto" ? "; set model.vae" : ""),
                     options.job_file + ": model.vae");
  }
  if (v.vae.config.z_dim != v.model.config.out_dim)
    throw InputError("the VAE has " + std::to_string(v.vae.config.z_dim) + " latent channels, the model makes " +
                         std::to_string(v.model.config.out_dim),
                     options.job_file + ": model.vae");
  if (v.job.output.codec == "h264" && !io::mp4_supported())
    throw InputError("codec h264 needs FFmpeg (libav), which this build lacks: set output.codec = \"y4m\"",
                     options.job_file + ": output.codec");
  if (!v.job.embeddings.empty()) {
    v.embeddings.emplace(v.job.embeddings, v.job.prompts, v.model.config.text_dim, v.model.config.text_len);
  } else {  // the text encoder makes them: the model's own unless the job names one
    std::string encoder = v.job.model.text_encoder;
    if (encoder == "auto") {
      const std::string& name = v.job.model.name;
      if (name == "tiny" || name.rfind("random:tiny", 0) == 0) encoder = "tiny";
      else if (name.rfind("random:", 0) == 0)
        throw InputError("a model with random weights has no text encoder: give prompts.embeddings or "
                         "model.text_encoder",
                         options.job_file + ": model.text_encoder");
      else encoder = name;  // a Diffusers model root has text_encoder/ and tokenizer/ beside transformer/
    }
    try {
      v.text = text::resolve_text_encoder_source(encoder);
    } catch (const std::exception& e) {
      throw InputError(e.what(), options.job_file + ": model.text_encoder");
    }
    if (v.text->config.d_model != v.model.config.text_dim)
      throw InputError("the text encoder makes " + std::to_string(v.text->config.d_model) +
                           "-wide embeddings, the model takes " + std::to_string(v.model.config.text_dim),
                       options.job_file + ": model.text_encoder");
    std::string suffix;  // array tasks share output.dir: each keeps its own cache (HDF5 takes one writer)
    if (v.slice) suffix = ".slice-" + std::to_string(v.slice->index) + "-of-" + std::to_string(v.slice->count);
    v.text_cache = std::filesystem::path(v.job.output.dir) / ("text_embedding_cache" + suffix + ".h5");
    try {
      text::EmbeddingCache probe(v.text_cache);  // an unreadable cache is bad input, before any work
    } catch (const std::exception& e) {
      throw InputError(e.what(), v.text_cache.string());
    }
  }
  for (const PromptItem& p : v.job.prompts) {
    const Shape s = latent_shape(p.sampling);
    if (layout.vae_ranks > 1 && s[2] < layout.vae_ranks)
      throw InputError("prompt " + p.id + " has " + std::to_string(s[2]) + " latent rows (height/8), fewer than the " +
                           std::to_string(layout.vae_ranks) + " VAE ranks that split them",
                       p.source);
    if (s[1] * (s[2] / 2) * (s[3] / 2) < layout.sequence_parallel())
      throw InputError("prompt " + p.id + " has fewer latent tokens than the " +
                           std::to_string(layout.sequence_parallel()) + " sequence-parallel ranks",
                       p.source);
  }
  const std::filesystem::path out = v.job.output.dir;
  if (std::filesystem::exists(out) && !std::filesystem::is_directory(out))
    throw InputError("output directory " + out.string() + " exists and is not a directory",
                     options.job_file + ": output.dir");
  if (!options.report.empty()) v.report = options.report;
  else if (v.slice && v.slice->count > 1)  // array tasks share output.dir: each keeps its own report
    v.report = out / ("report.slice-" + std::to_string(v.slice->index) + "-of-" + std::to_string(v.slice->count) +
                      ".json");
  else v.report = out / "report.json";
  if (std::filesystem::is_directory(v.report) || v.report.filename().empty())
    throw InputError("report path " + v.report.string() + " is a directory; give a file name", "--report");
}

// Every rank validates; if any failed, the lowest failing rank prints its one line and all return 2.
bool agree_valid(const comm::MpiRuntime& mpi, const std::optional<InputError>& error) {
  const int failing = mpi.min_over_ranks(error ? mpi.rank() : mpi.size());
  if (failing == mpi.size()) return true;
  // Tasks that MPI left as worlds of one rank each (srun without its MPI plugin) all fail alike: the launcher's
  // rank 0 alone says so.
  const bool speaks = mpi.size() > 1 || mpi.launch_place().rank <= 0;
  if (mpi.rank() == failing && speaks) print_input_error(error->what(), error->where());
  return false;
}

}  // namespace

int run_command(const RunOptions& options, int* argc, char*** argv) {
  comm::MpiRuntime mpi(argc, argv);
  const JobClock clock(mpi);
  Progress progress(mpi.rank() == 0);
  const std::string started = utc_timestamp();
  const auto job_start = Clock::now();
  StageTimes stages;

  // 1. Read and validate, before any GPU work.
  ValidJob v;
  std::optional<InputError> error;
  try {
    validate(v, options, mpi);
  } catch (const InputError& e) {
    error = e;
  } catch (const std::exception& e) {
    error = InputError(e.what(), options.job_file);
  }
  if (!agree_valid(mpi, error)) return 2;
  const partition::Plan& plan = *v.plan;
  stages.add("read and validate job", seconds_since(job_start));
  progress.line("job " + options.job_file + ": " + std::to_string(v.job.prompts.size()) + " prompt" +
                (v.job.prompts.size() == 1 ? "" : "s") + ", model " + v.job.model.name);
  if (v.slice)
    progress.line("prompt slice " + std::to_string(v.slice->index) + "/" + std::to_string(v.slice->count) +
                  (v.slice->first == v.slice->end ? ": no prompts"
                                                  : ": prompts " + std::to_string(v.slice->first + 1) + " to " +
                                                        std::to_string(v.slice->end)) +
                  " of " + std::to_string(v.slice->total));
  {
    const auto& place = mpi.launch_place();
    progress.line("launch: " + std::to_string(mpi.size()) + " rank" + (mpi.size() == 1 ? "" : "s") + " by " +
                  place.launcher + ", local rank from " +
                  (place.local_rank_variable.empty() ? std::string("MPI's host split") : place.local_rank_variable));
  }
  progress.line("layout: " + plan.layout().describe());
  for (const auto& w : plan.warnings()) progress.line("warning: " + w);

  // 2. Backend: CUDA when asked for, or by default when every rank sees a GPU.
  auto t = Clock::now();
  const int devices = comm::cuda_device_count();
  const int min_devices = mpi.min_over_ranks(devices);
  const bool want_cuda = v.job.model.backend == "cuda";
  if (want_cuda && min_devices == 0) {
    if (devices == 0)
      print_input_error("backend cuda was asked for but this rank sees no CUDA device",
                        "rank " + std::to_string(mpi.rank()));
    return 2;
  }
  const bool use_cuda = want_cuda || (v.job.model.backend == "auto" && min_devices > 0);
  if (!use_cuda && !std::getenv("OMP_NUM_THREADS")) {
    // The ranks of a host share its cores: oversubscribed OpenMP threads spin against each other.
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    set_cpu_threads(std::max(1, cores / mpi.local_size()));
  }
  std::string device_name = "cpu";
  int cuda_device = -1;
  if (use_cuda) {
    cuda_device = comm::select_cuda_device(mpi.local_rank());
    device_name = comm::current_cuda_device_name();
  }
  const auto rank_places = mpi.gather_to_root(launch_rank_json(mpi, cuda_device).dump());
  stages.add("select backend", seconds_since(t));
  progress.line(std::string("backend: ") + (use_cuda ? "cuda (" + device_name + "), nccl" : "cpu, mpi"));
  // Every CUDA backend made from here on reads the choice ($DITRUN_GEMM_TUNING unless the job or --gemm-tuning says).
  if (!v.job.model.gemm_tuning.empty())
    cuda::set_gemm_tuning_file(v.job.model.gemm_tuning == "off" ? "" : v.job.model.gemm_tuning);
  if (use_cuda && !cuda::gemm_tuning_file().empty())
    progress.line("GEMM tuning: " + cuda::gemm_tuning_file().string() +
                  " (cuBLASLt algorithms measured once per GEMM shape and GPU, then read from there)");

  // 3. One communicator per group, each checked with a small collective.
  t = Clock::now();
  const auto sets = plan_group_sets(plan);
  comm::Communicators comms(sets, use_cuda ? comm::Backend::nccl : comm::Backend::mpi);
  mpi.barrier();
  stages.add("build communicators", seconds_since(t));
  t = Clock::now();
  const auto checks = comms.check();
  stages.add("check communicators", seconds_since(t));
  int failed = 0;
  for (const auto& c : checks) {
    if (!c.ok) {
      ++failed;
      progress.line("group " + c.set + "[" + std::to_string(c.group) + "] failed its check: " + c.detail);
    }
  }
  if (mpi.rank() == 0)
    progress.line("communicators: " + std::to_string(checks.size()) + " groups in " + std::to_string(sets.size()) +
                  " sets checked, " + std::to_string(failed) + " failed");
  if (mpi.max_over_ranks(failed) > 0) comm::abort_job("communicator check failed", 1);

  // Which prompts this run renders (those without their video), taken by every rank before any is rendered.
  const std::vector<bool> pending = prompts_to_render(v.job);
  mpi.barrier();

  // Text (issue 6): without an embeddings file the run encodes its prompts, on the dedicated text ranks ahead of
  // the DiT ranks (prompt i + 1 while they denoise prompt i), or on each replica's writing rank just before the
  // replica denoises it (shared role). Who does what: launcher/text_schedule.h.
  std::optional<TextSchedule> schedule;
  nlohmann::json text_summary;  // on encoding ranks
  if (v.text) {
    schedule = make_text_schedule(plan, v.job);
    const std::string ranks = partition::format_ranks(schedule->encoders);
    const std::string where =
        schedule->dedicated
            ? " on the dedicated text rank" + std::string(schedule->encoders.size() > 1 ? "s " : " ") + ranks +
                  ", ahead of the DiT ranks"
            : " on each replica's first rank (" + ranks + "), before each prompt";
    progress.line("text: " + v.text->describe() + where + ", cache " + v.text_cache.string());
  }

  // Dedicated VAE ranks: the first of them receives every prompt's latents from the rank that writes its
  // replica's outputs; the VAE group decodes them together, each rank a band of rows (halo exchange).
  const bool dedicated_vae = plan.layout().dedicated_vae();
  const int vae_leader = dedicated_vae ? plan.groups(partition::GroupKind::vae).at(0).ranks.at(0) : -1;
  const auto replica_writer = [&](int replica) {
    for (int r = 0; r < mpi.size(); ++r) {
      const auto& d = plan.roles(r).dit;
      if (d && d->replica == replica && d->cfg == 0 && d->pipefusion == 0 && d->ring == 0 && d->ulysses == 0)
        return r;
    }
    throw std::logic_error("no writing rank for replica " + std::to_string(replica));
  };

  // 4. Denoise: each replica takes every replicas-th prompt; within a replica the cfg pair shares each step.
  t = Clock::now();
  nlohmann::json my_entries = nlohmann::json::array();
  const auto& roles = plan.roles(mpi.rank());
  if (roles.dit) {
    std::unique_ptr<Backend> backend = use_cuda ? make_cuda_backend() : make_cpu_backend();
    wan::DiT dit = wan::make_dit(*backend, v.model);
    backend->synchronize();
    if (mpi.rank() == 0) progress.line("model: " + v.model.describe() + " on " + backend->name());
    std::filesystem::create_directories(v.job.output.dir);
    const auto cfg = comms.get("cfg"), sp = comms.get("sp"), ulysses = comms.get("ulysses"), ring = comms.get("ring");
    const int replica = roles.dit->replica;
    const bool writer = roles.dit->cfg == 0 && roles.dit->ring == 0 && roles.dit->ulysses == 0;
    // Shared VAE role: the rank that writes a replica's outputs also decodes them.
    std::optional<wan::VaeDecoder> vae;
    if (writer && !dedicated_vae) vae.emplace(wan::make_vae_decoder(*backend, v.vae));
    if (mpi.rank() == 0)
      progress.line("VAE: " + v.vae.describe() +
                    (dedicated_vae ? " on the dedicated VAE ranks" : " on " + backend->name()) + ", video " +
                    (v.job.output.codec == "y4m" ? "Y4M" : "H.264 MP4"));
    // Shared text role: this replica's writing rank encodes each of its prompts just before denoising it.
    std::optional<PromptEncoder> prompt_encoder;
    std::optional<TextEncodingRank> text_rank;
    if (schedule && !schedule->dedicated && schedule->is_encoder(mpi.rank())) {
      prompt_encoder.emplace(*v.text, *backend, v.text_cache);
      text_rank.emplace(*schedule, v.job, pending, *prompt_encoder, mpi, clock);
      text_rank->start();
    }
    std::optional<ScheduledEmbeddings> scheduled;
    if (schedule) scheduled.emplace(*schedule, mpi, v.model.config.text_dim, text_rank ? &*text_rank : nullptr);
    PromptEmbeddings& embeddings = scheduled ? static_cast<PromptEmbeddings&>(*scheduled) : *v.embeddings;
    DenoiseContext c{v.job,  dit,    embeddings, cfg.get(),  sp.get(),       ulysses.get(), ring.get(),
                     writer, vae ? &*vae : nullptr, {},   progress,  mpi.rank() == 0, clock};
    for (size_t i = replica; i < v.job.prompts.size(); i += plan.layout().replicas) {
      const auto& prompt = v.job.prompts[i];
      nlohmann::json entry;
      if (!pending[i]) {
        entry = skipped_prompt_entry(v.job, prompt);
      } else {
        if (mpi.rank() == 0) progress.line("prompt " + prompt.id + " (replica " + std::to_string(replica) + ")");
        if (dedicated_vae)
          c.hand_over = [&, i](const std::vector<float>& latents) {
            mpi.send_floats(latents, vae_leader, static_cast<int>(i));
          };
        entry = denoise_prompt(c, i, prompt);
      }
      entry["replica"] = replica;
      if (c.writes_output) my_entries.push_back(std::move(entry));
    }
    if (text_rank) {
      text_rank->finish();
      for (const auto& e : text_rank->prompt_entries()) my_entries.push_back(e);
      text_summary = text_rank->summary();
    }
  }
  if (schedule && schedule->dedicated && schedule->is_encoder(mpi.rank())) {
    // Dedicated text role: every prompt of this rank, in order, each sent to its DiT ranks as soon as it is encoded.
    std::filesystem::create_directories(v.job.output.dir);
    std::unique_ptr<Backend> backend = use_cuda ? make_cuda_backend() : make_cpu_backend();
    PromptEncoder encoder(*v.text, *backend, v.text_cache);
    TextEncodingRank text_rank(*schedule, v.job, pending, encoder, mpi, clock);
    text_rank.start();
    text_rank.encode_all();
    text_rank.finish();
    for (const auto& e : text_rank.prompt_entries()) my_entries.push_back(e);
    text_summary = text_rank.summary();
  }
  if (roles.vae && dedicated_vae) {
    // Dedicated VAE role: decode prompt i while the DiT ranks denoise the next ones: the prompts this run renders.
    std::vector<size_t> todo;
    for (size_t i = 0; i < v.job.prompts.size(); ++i)
      if (pending[i]) todo.push_back(i);
    std::unique_ptr<Backend> backend = use_cuda ? make_cuda_backend() : make_cpu_backend();
    wan::VaeDecoder vae = wan::make_vae_decoder(*backend, v.vae);
    const auto group = comms.get("vae");
    if (group->size() > 1) vae.split_rows_over(group.get());
    const bool leader = mpi.rank() == vae_leader;
    for (size_t i : todo) {
      const auto& prompt = v.job.prompts[i];
      const Shape shape = latent_shape(prompt.sampling);
      Tensor z = backend->allocate(shape, DType::f32);
      if (leader) {
        const int from = replica_writer(static_cast<int>(i % static_cast<size_t>(plan.layout().replicas)));
        const std::vector<float> latents = mpi.receive_floats(from, static_cast<int>(i));
        backend->upload(z, latents.data());
      }
      const auto decode_start = Clock::now();
      if (group->size() > 1)
        group->broadcast(z.data(), static_cast<size_t>(z.numel()), DType::f32, 0,
                         comm::Stream{backend->stream_handle()});
      const int64_t frames = decode_to_video(vae, z, video_path(v.job, prompt),
                                             VideoSettings{v.job.output.fps, v.job.output.crf, v.job.output.preset});
      if (leader)
        my_entries.push_back({{"id", prompt.id}, {"frames", frames}, {"vae_seconds", seconds_since(decode_start)},
                              {"vae_rank", mpi.rank()}, {"vae_ranks", group->size()}});
    }
  }
  const auto gathered = mpi.gather_to_root(my_entries.dump());
  const auto text_summaries = mpi.gather_to_root(text_summary.dump());
  stages.add("denoise", seconds_since(t));  // with the text encoding and VAE decoding around and beside it

  // 5. The report (rank 0), complete or absent: written through report.json.part.
  if (mpi.rank() == 0) {
    nlohmann::json report;
    report["ditrun"] = {{"version", DITRUN_VERSION}, {"commit", build_commit()}};
    report["started"] = started;
    report["finished"] = utc_timestamp();
    report["status"] = "ok";
    report["job"] = job_to_json(v.job);
    report["backend"] = {{"compute", use_cuda ? "cuda" : "cpu"},
                         {"communicators", use_cuda ? "nccl" : "mpi"},
                         {"device", device_name}};
    report["world"] = {{"ranks", mpi.size()}, {"hosts", plan.topology().hosts()},
                       {"rank_hosts", plan.topology().host_of_rank()}};
    nlohmann::json places = nlohmann::json::array();
    for (const auto& text : rank_places) places.push_back(nlohmann::json::parse(text));
    report["launch"] = launch_to_json(mpi.launch_place(), places);
    for (const auto& w : report["launch"]["warnings"]) progress.line("warning: " + w.get<std::string>());
    if (v.slice)
      report["prompt_slice"] = {{"index", v.slice->index}, {"count", v.slice->count}, {"first", v.slice->first},
                                {"end", v.slice->end},     {"total", v.slice->total}};
    nlohmann::json plan_json = plan_to_json(plan);
    add_group_checks(plan_json, checks);
    report["plan"] = std::move(plan_json);
    if (schedule) {
      nlohmann::json text = {{"encoder", v.text->describe()},
                             {"weights_id", v.text->weights_id},
                             {"role", schedule->dedicated ? "dedicated" : "shared"},
                             {"encoder_ranks", schedule->encoders},
                             {"cache", v.text_cache.string()},
                             {"texts", 0},
                             {"cache_hits", 0},
                             {"encoded", 0},
                             {"seconds", 0.0},
                             {"ranks", nlohmann::json::array()}};
      for (const auto& dump : text_summaries) {
        const auto r = nlohmann::json::parse(dump);
        if (r.is_null()) continue;
        for (const char* key : {"texts", "cache_hits", "encoded"}) text[key] = text[key].get<int64_t>() + r[key].get<int64_t>();
        text["seconds"] = text["seconds"].get<double>() + r["seconds"].get<double>();
        text["ranks"].push_back(r);
      }
      progress.line("text: " + std::to_string(text["texts"].get<int64_t>()) + " texts, " +
                    std::to_string(text["cache_hits"].get<int64_t>()) + " from the cache, " +
                    std::to_string(text["encoded"].get<int64_t>()) + " encoded");
      report["text"] = std::move(text);
    }
    nlohmann::json prompts = nlohmann::json::array();
    std::vector<nlohmann::json> parts;  // entries of text and dedicated VAE ranks, merged into the DiT's by id
    for (const auto& text : gathered)
      for (auto& e : nlohmann::json::parse(text)) {
        if (e.contains("status")) prompts.push_back(std::move(e));
        else parts.push_back(std::move(e));
      }
    for (const auto& d : parts)
      for (auto& p : prompts)
        if (p["id"] == d["id"]) p.update(d);
    int done = 0;
    for (const auto& e : prompts) done += e["status"] == "done";
    report["prompts"] = std::move(prompts);
    progress.line("prompts: " + std::to_string(done) + " denoised, " +
                  std::to_string(report["prompts"].size() - done) + " skipped (output exists)");
    stages.add("total", seconds_since(job_start));
    report["stages"] = stages.to_json();
    const auto path = write_report_file(v.report, report);
    progress.line("report: " + path.string());
  }
  mpi.barrier();
  return 0;
}

}  // namespace ditrun

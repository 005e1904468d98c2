// `ditrun dit-forward`: one DiT forward from an HDF5 input, for checking against a reference.
//   in.h5:  x [16,F,H,W] f32, t (scalar), context [L ≤ 512, text_dim] f32, optional context_null
//   out.h5: v [16,F,H,W] f32 (and v_null when context_null is given)
#include <algorithm>
#include <filesystem>
#include <optional>

#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/mpi_runtime.h"
#include "io/hdf5_file.h"
#include "launcher/report.h"
#include "model/parallel/sequence_parallel.h"
#include "partition/plan.h"
#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "model/core/backend.h"
#include "model/cuda/gemm_tuning_cache.h"
#include "model/wan/dit_source.h"

namespace ditrun {

namespace {

struct ForwardInput {
  std::vector<float> x;
  Shape x_shape;
  double t = 0;
  std::vector<float> context, context_null;
  int64_t context_rows = 0, context_null_rows = 0;
};

std::vector<float> read_context(const io::Hdf5File& in, const std::string& name, const wan::DitConfig& config,
                                const std::string& file, int64_t& rows) {
  std::vector<int64_t> shape;
  std::vector<float> data = in.read_f32(name, &shape);
  if (shape.size() != 2 || shape[1] != config.text_dim || shape[0] < 1 || shape[0] > config.text_len)
    throw InputError(name + " has shape " + shape_string(shape) + ", expected [L ≤ " + std::to_string(config.text_len) +
                         ", " + std::to_string(config.text_dim) + "]",
                     file);
  rows = shape[0];
  return data;
}

ForwardInput read_input(const std::string& file, const wan::DitConfig& config) {
  if (!std::filesystem::is_regular_file(file)) throw InputError("input file does not exist", file);
  ForwardInput in;
  try {
    io::Hdf5File h5(file, io::Hdf5File::Mode::read);
    for (const char* name : {"x", "t", "context"})
      if (!h5.has(name)) throw InputError(std::string("dataset ") + name + " is missing", file);
    in.x = h5.read_f32("x", &in.x_shape);
    if (in.x_shape.size() != 4 || in.x_shape[0] != config.in_dim || in.x_shape[2] % 2 || in.x_shape[3] % 2 ||
        in.x_shape[1] < 1 || in.x_shape[2] < 2 || in.x_shape[3] < 2)
      throw InputError("x has shape " + shape_string(in.x_shape) + ", expected [" + std::to_string(config.in_dim) +
                           ", F, H, W] with even H and W",
                       file);
    in.t = h5.read_scalar("t");
    in.context = read_context(h5, "context", config, file, in.context_rows);
    if (h5.has("context_null")) in.context_null = read_context(h5, "context_null", config, file, in.context_null_rows);
  } catch (const io::Hdf5Error& e) {
    throw InputError(e.what(), file);
  }
  return in;
}

}  // namespace

namespace {

// This rank's velocity for one context: its token shard through the DiT, the shards gathered over the sp group.
std::vector<float> forward_layout(wan::DiT& dit, const Tensor& shard, const Shape& latent_shape,
                                  const wan::ContextCache& context, double t, comm::Comm& sp_group,
                                  parallel::SequenceParallel* sp) {
  Backend& be = dit.backend();
  const Arena::Mark mark = be.arena().mark();
  const wan::DiT::Grid grid{latent_shape[1], latent_shape[2] / 2, latent_shape[3] / 2};
  Tensor v_mine = be.scratch(shard.shape(), DType::f32);
  dit.forward_tokens(v_mine, shard, grid, t, context, sp);
  const Tensor v = parallel::gather_latent(be, sp_group, v_mine, latent_shape);
  std::vector<float> host(static_cast<size_t>(v.numel()));
  be.download(v, host.data());
  be.arena().rewind(mark);
  if (sp) sp->settle_timing(be);
  return host;
}

}  // namespace

int dit_forward_command(const DitForwardOptions& o, int* argc, char*** argv) {
  comm::MpiRuntime mpi(argc, argv);
  wan::DitSource source;
  ForwardInput input;
  std::optional<partition::Plan> plan;
  std::optional<InputError> error;
  try {
    if (o.backend != "cpu" && o.backend != "cuda")
      throw InputError("backend must be cpu or cuda, got \"" + o.backend + "\"", "--backend");
    try {
      source = wan::resolve_dit_source(o.model);
    } catch (const std::exception& e) {
      throw InputError(e.what(), "--model");
    }
    input = read_input(o.input, source.config);
    if (std::filesystem::is_directory(o.output)) throw InputError("output is a directory", o.output);
    partition::LayoutRequest layout;
    layout.cfg = o.cfg;
    layout.ring = o.ring;
    layout.ulysses = o.ulysses;
    layout.replicas = 1;
    try {
      plan.emplace(partition::make_plan(layout, partition::Topology(mpi.hosts())));
    } catch (const partition::LayoutError& e) {
      throw InputError(e.what(), "--" + e.key().substr(e.key().find('.') + 1));
    }
    if (o.cfg == 2 && input.context_null.empty())
      throw InputError("--cfg 2 needs context_null in the input (the pair splits the two passes)", o.input);
    const int64_t tokens = input.x_shape[1] * (input.x_shape[2] / 2) * (input.x_shape[3] / 2);
    if (tokens < o.ring * o.ulysses)
      throw InputError("the latent has fewer tokens than the sequence-parallel ranks", o.input);
  } catch (const InputError& e) {
    error = e;
  }
  // Every rank checks the same input; the lowest failing rank says why, all exit 2.
  const int failing = mpi.min_over_ranks(error ? mpi.rank() : mpi.size());
  if (failing < mpi.size()) {
    if (mpi.rank() == failing) print_input_error(error->what(), error->where());
    return 2;
  }

  if (!o.gemm_tuning.empty()) cuda::set_gemm_tuning_file(o.gemm_tuning == "off" ? "" : o.gemm_tuning);
  const bool cuda = o.backend == "cuda";
  if (cuda) comm::select_cuda_device(mpi.local_rank());
  comm::Communicators comms(plan_group_sets(*plan), cuda ? comm::Backend::nccl : comm::Backend::mpi);
  std::unique_ptr<Backend> backend = cuda ? make_cuda_backend() : make_cpu_backend();
  wan::DiT dit = wan::make_dit(*backend, source);
  Tensor x = backend->allocate(input.x_shape, DType::f32);
  backend->upload(x, input.x.data());
  auto sp_group = comms.get("sp"), ulysses = comms.get("ulysses"), ring = comms.get("ring"), cfg = comms.get("cfg");
  const auto& coord = *plan->roles(mpi.rank()).dit;
  const int64_t tokens = input.x_shape[1] * (input.x_shape[2] / 2) * (input.x_shape[3] / 2);
  std::optional<parallel::SequenceParallel> sp;
  if (sp_group->size() > 1) sp.emplace(*ulysses, *ring, tokens);
  // My token shard, made once for both passes.
  const Tensor shard = parallel::token_shard(*backend, x, sp ? sp->first_token() : 0, sp ? sp->shard_tokens() : tokens);

  // With a cfg pair, position 0 computes v and position 1 v_null; otherwise every rank computes both.
  std::vector<float> v_host, v_null_host;
  if (o.cfg == 1 || coord.cfg == 0) {
    const wan::ContextCache context = dit.encode_context(input.context, input.context_rows);
    v_host = forward_layout(dit, shard, input.x_shape, context, input.t, *sp_group, sp ? &*sp : nullptr);
  }
  if (!input.context_null.empty() && (o.cfg == 1 || coord.cfg == 1)) {
    const wan::ContextCache null_context = dit.encode_context(input.context_null, input.context_null_rows);
    v_null_host = forward_layout(dit, shard, input.x_shape, null_context, input.t, *sp_group, sp ? &*sp : nullptr);
  }
  if (o.cfg == 2) {  // the writer (cfg position 0) receives v_null from its partner
    const int64_t n = static_cast<int64_t>(input.x.size());
    Tensor mine = backend->allocate({n}, DType::f32), both = backend->allocate({2 * n}, DType::f32);
    backend->upload(mine, (coord.cfg == 0 ? v_host : v_null_host).data());
    cfg->all_gather(mine.data(), both.data(), static_cast<size_t>(n), DType::f32,
                    comm::Stream{backend->stream_handle()});
    std::vector<float> both_host(static_cast<size_t>(2 * n));
    backend->download(both, both_host.data());
    v_host.assign(both_host.begin(), both_host.begin() + n);
    v_null_host.assign(both_host.begin() + n, both_host.end());
  }
  if (mpi.rank() == 0) {
    io::Hdf5Writer writer(o.output);
    writer.file().write_f32("v", v_host.data(), input.x_shape);
    if (!v_null_host.empty()) writer.file().write_f32("v_null", v_null_host.data(), input.x_shape);
    writer.file().write_attribute("/", "model", source.describe());
    writer.file().write_attribute("/", "backend", backend->name());
    writer.file().write_attribute("/", "layout", plan->layout().describe());
    writer.commit();
    std::printf("dit-forward: %s on %s, %s, latent %s, t = %g: wrote %s\n", source.describe().c_str(),
                backend->name().c_str(), plan->layout().describe().c_str(), shape_string(input.x_shape).c_str(),
                input.t, o.output.c_str());
  }
  mpi.barrier();
  return 0;
}

}  // namespace ditrun

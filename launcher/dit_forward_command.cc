// `ditrun dit-forward`: one DiT forward from an HDF5 input, for checking against a reference.
//   in.h5:  x [16,F,H,W] f32, t (scalar), context [L ≤ 512, text_dim] f32, optional context_null
//   out.h5: v [16,F,H,W] f32 (and v_null when context_null is given)
#include <filesystem>

#include "io/hdf5_file.h"
#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "model/core/backend.h"
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

int dit_forward_command(const DitForwardOptions& o) {
  wan::DitSource source;
  ForwardInput input;
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
  } catch (const InputError& e) {
    print_input_error(e.what(), e.where());
    return 2;
  }

  std::unique_ptr<Backend> backend = o.backend == "cuda" ? make_cuda_backend() : make_cpu_backend();
  wan::DiT dit = wan::make_dit(*backend, source);
  Tensor x = backend->allocate(input.x_shape, DType::f32);
  backend->upload(x, input.x.data());
  Tensor v = backend->allocate(input.x_shape, DType::f32);
  std::vector<float> v_host(input.x.size()), v_null_host;

  const wan::ContextCache context = dit.encode_context(input.context, input.context_rows);
  dit.forward(v, x, input.t, context);
  backend->download(v, v_host.data());
  if (!input.context_null.empty()) {
    const wan::ContextCache null_context = dit.encode_context(input.context_null, input.context_null_rows);
    dit.forward(v, x, input.t, null_context);
    v_null_host.resize(input.x.size());
    backend->download(v, v_null_host.data());
  }

  io::Hdf5Writer writer(o.output);
  writer.file().write_f32("v", v_host.data(), input.x_shape);
  if (!v_null_host.empty()) writer.file().write_f32("v_null", v_null_host.data(), input.x_shape);
  writer.file().write_attribute("/", "model", source.describe());
  writer.file().write_attribute("/", "backend", backend->name());
  writer.commit();
  std::printf("dit-forward: %s on %s, latent %s, t = %g: wrote %s\n", source.describe().c_str(),
              backend->name().c_str(), shape_string(input.x_shape).c_str(), input.t, o.output.c_str());
  return 0;
}

}  // namespace ditrun

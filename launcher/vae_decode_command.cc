// `ditrun vae-decode`: final latents to a video or to frames, for checking against a reference.
//   in.h5:  latents [16, T, h, w] f32, normalised as the DiT produces them (the decoder de-normalises, spec §4.1)
//   out:    .mp4 (H.264 through libav) or .y4m: the video at --fps; .h5: frames [3, 1 + 4(T − 1), 8h, 8w] f32 in
//           [−1, 1]. Frames go to the encoder's thread chunk by chunk while the next latent frame decodes.
// Under mpirun the ranks of the launch are the VAE group: each decodes a band of rows of every frame (issue 5,
// model/parallel/row_bands.h) and rank 0 gathers the frames and writes the output.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/mpi_runtime.h"
#include "io/hdf5_file.h"
#include "io/video_writer.h"
#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "launcher/video_output.h"
#include "model/core/backend.h"
#include "model/parallel/row_bands.h"
#include "model/wan/vae_source.h"

namespace ditrun {

namespace {

enum class OutputKind { video, frames_h5 };

OutputKind output_kind(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".h5") return OutputKind::frames_h5;
  if (ext == ".y4m") return OutputKind::video;
  if (ext == ".mp4") {
    if (!io::mp4_supported()) throw InputError("this ditrun was built without FFmpeg: write .y4m or .h5", path);
    return OutputKind::video;
  }
  throw InputError("output must end in .mp4, .y4m or .h5", path);
}

}  // namespace

int vae_decode_command(const VaeDecodeOptions& o, int* argc, char*** argv) {
  comm::MpiRuntime mpi(argc, argv);
  wan::VaeSource source;
  std::vector<float> latents;
  Shape shape;
  OutputKind kind = OutputKind::video;
  std::optional<InputError> error;
  try {
    if (o.backend != "cpu" && o.backend != "cuda")
      throw InputError("backend must be cpu or cuda, got \"" + o.backend + "\"", "--backend");
    if (o.fps < 1 || o.fps > 240) throw InputError("fps must be 1 to 240, got " + std::to_string(o.fps), "--fps");
    if (o.crf < 0 || o.crf > 51) throw InputError("crf must be 0 to 51, got " + std::to_string(o.crf), "--crf");
    try {
      source = wan::resolve_vae_source(o.vae);
    } catch (const std::exception& e) {
      throw InputError(e.what(), "--vae");
    }
    kind = output_kind(o.output);
    if (std::filesystem::is_directory(o.output)) throw InputError("output is a directory", o.output);
    const auto parent = std::filesystem::absolute(o.output).parent_path();
    if (!std::filesystem::is_directory(parent)) throw InputError("output folder does not exist", parent.string());
    if (!std::filesystem::is_regular_file(o.input)) throw InputError("input file does not exist", o.input);
    try {
      io::Hdf5File h5(o.input, io::Hdf5File::Mode::read);
      if (!h5.has("latents")) throw InputError("dataset latents is missing", o.input);
      latents = h5.read_f32("latents", &shape);
    } catch (const io::Hdf5Error& e) {
      throw InputError(e.what(), o.input);
    }
    if (shape.size() != 4 || shape[0] != source.config.z_dim || shape[1] < 1 || shape[2] < 1 || shape[3] < 1)
      throw InputError("latents has shape " + shape_string(shape) + ", expected [" +
                           std::to_string(source.config.z_dim) + ", T, h, w]",
                       o.input);
    if (shape[2] < mpi.size())  // every VAE rank owns at least one latent row (parallel::row_band)
      throw InputError("latents have " + std::to_string(shape[2]) + " rows (h), fewer than the " +
                           std::to_string(mpi.size()) + " VAE ranks that split them",
                       o.input);
  } catch (const InputError& e) {
    error = e;
  }
  // Every rank checks the same input; the lowest failing rank says why, all exit 2.
  const int failing = mpi.min_over_ranks(error ? mpi.rank() : mpi.size());
  if (failing < mpi.size()) {
    if (mpi.rank() == failing) print_input_error(error->what(), error->where());
    return 2;
  }

  const bool cuda = o.backend == "cuda";
  if (cuda) comm::select_cuda_device(mpi.local_rank());
  std::vector<int> world(static_cast<size_t>(mpi.size()));
  for (int r = 0; r < mpi.size(); ++r) world[static_cast<size_t>(r)] = r;
  comm::Communicators comms({comm::GroupSet{"vae", {world}}}, cuda ? comm::Backend::nccl : comm::Backend::mpi);
  const std::shared_ptr<comm::Comm> vae_group = comms.get("vae");
  const bool writes = vae_group->rank() == 0;
  std::unique_ptr<Backend> backend = cuda ? make_cuda_backend() : make_cpu_backend();
  wan::VaeDecoder decoder = wan::make_vae_decoder(*backend, source);
  decoder.split_rows_over(vae_group.get());  // one rank: the whole frame, no communication
  const auto& c = source.config;
  const int64_t frames = c.output_frames(shape[1]), height = shape[2] * c.spatial_factor(),
                width = shape[3] * c.spatial_factor(), frame_size = 3 * height * width;
  Tensor z = backend->allocate(shape, DType::f32);
  backend->upload(z, latents.data());

  if (kind == OutputKind::video) {
    decode_to_video(decoder, z, o.output, VideoSettings{o.fps, o.crf, o.preset});
  } else {  // frames [F, 3, H, W] as decoded, stored [3, F, H, W]
    std::vector<float> all(writes ? static_cast<size_t>(frames * frame_size) : 0);
    decoder.decode(z, [&](int64_t first, const Tensor& band) {
      const Tensor chunk = decoder.gather_frames(band);  // collective: every rank takes part
      if (writes) backend->download(chunk, all.data() + first * frame_size);
    });
    if (!writes) return 0;
    std::vector<float> planar(all.size());
    const int64_t plane = height * width;
    for (int64_t f = 0; f < frames; ++f)
      for (int64_t ch = 0; ch < 3; ++ch)
        std::copy_n(all.begin() + (f * 3 + ch) * plane, plane, planar.begin() + (ch * frames + f) * plane);
    io::Hdf5Writer writer(o.output);
    writer.file().write_f32("frames", planar.data(), {3, frames, height, width});
    writer.file().write_attribute("/", "vae", source.describe());
    writer.file().write_attribute("/", "backend", backend->name());
    writer.commit();
  }
  if (!writes) return 0;
  std::printf("vae-decode: %s on %s with %d VAE rank%s, latents %s -> %lld frames of %lldx%lld: wrote %s\n",
              source.describe().c_str(), backend->name().c_str(), mpi.size(), mpi.size() == 1 ? "" : "s",
              shape_string(shape).c_str(),
              static_cast<long long>(frames), static_cast<long long>(width), static_cast<long long>(height),
              o.output.c_str());
  return 0;
}

}  // namespace ditrun

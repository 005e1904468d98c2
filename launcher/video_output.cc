#include "launcher/video_output.h"

#include <optional>
#include <vector>

#include "io/video_writer.h"

namespace ditrun {

int64_t decode_to_video(wan::VaeDecoder& decoder, const Tensor& latents, const std::string& path,
                        const VideoSettings& settings) {
  const auto& c = decoder.config();
  const int height = static_cast<int>(latents.dim(2) * c.spatial_factor());
  const int width = static_cast<int>(latents.dim(3) * c.spatial_factor());
  const size_t frame_size = static_cast<size_t>(3) * height * width;
  // With a row split every rank decodes its band and helps gather the frames; rank 0 of the group writes them.
  const bool writes = decoder.group() == nullptr || decoder.group()->rank() == 0;
  std::optional<io::StreamingVideoWriter> writer;
  if (writes) writer.emplace(io::make_video_sink(path, width, height, settings.fps, settings.crf, settings.preset));
  Backend& be = decoder.backend();
  std::vector<float> host;
  int64_t frames = 0;
  decoder.decode(latents, [&](int64_t, const Tensor& band) {  // band: frames [n, 3, this rank's rows, W]
    const Tensor chunk = decoder.gather_frames(band);            // [n, 3, H, W]
    frames += chunk.dim(0);
    if (!writer) return;
    host.resize(static_cast<size_t>(chunk.numel()));
    be.download(chunk, host.data());
    for (int64_t f = 0; f < chunk.dim(0); ++f)
      writer->push(std::vector<float>(host.begin() + f * frame_size, host.begin() + (f + 1) * frame_size));
  });
  if (!writer) return frames;
  writer->finish();
  return writer->frames_written();
}

}  // namespace ditrun

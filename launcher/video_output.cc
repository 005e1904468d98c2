#include "launcher/video_output.h"

#include <vector>

#include "io/video_writer.h"

namespace ditrun {

int64_t decode_to_video(wan::VaeDecoder& decoder, const Tensor& latents, const std::string& path,
                        const VideoSettings& settings) {
  const auto& c = decoder.config();
  const int height = static_cast<int>(latents.dim(2) * c.spatial_factor());
  const int width = static_cast<int>(latents.dim(3) * c.spatial_factor());
  const size_t frame_size = static_cast<size_t>(3) * height * width;
  io::StreamingVideoWriter writer(io::make_video_sink(path, width, height, settings.fps, settings.crf,
                                                      settings.preset));
  Backend& be = decoder.backend();
  std::vector<float> host;
  decoder.decode(latents, [&](int64_t, const Tensor& chunk) {  // chunk: frames [n, 3, H, W]
    host.resize(static_cast<size_t>(chunk.numel()));
    be.download(chunk, host.data());
    for (int64_t f = 0; f < chunk.dim(0); ++f)
      writer.push(std::vector<float>(host.begin() + f * frame_size, host.begin() + (f + 1) * frame_size));
  });
  writer.finish();
  return writer.frames_written();
}

}  // namespace ditrun

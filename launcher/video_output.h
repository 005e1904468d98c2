// Decoding final latents into a video file: the VAE hands over each chunk of frames as it is decoded and a writer
// thread encodes them while the next latent frame decodes (spec §4.4: 1 frame, then 4 per latent frame).
#pragma once
#include <cstdint>
#include <string>

#include "model/core/tensor.h"
#include "model/wan/vae_decoder.h"

namespace ditrun {

struct VideoSettings {
  int fps = 16;
  int crf = 18;
  std::string preset = "medium";
};

// Decodes latents [z_dim, T, h, w] (normalised, f32 on the decoder's backend) into `path` (.mp4 or .y4m, written
// as .part and renamed when complete). Returns the number of frames written. With a row split over the decoder's
// VAE group (collective over it) rank 0 of the group writes the file and the others return the frames decoded.
int64_t decode_to_video(wan::VaeDecoder& decoder, const Tensor& latents, const std::string& path,
                        const VideoSettings& settings);

}  // namespace ditrun

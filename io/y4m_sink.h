// YUV4MPEG2 (.y4m) video, no dependency: raw 8-bit 4:2:0 frames after a one-line header, readable by ffmpeg,
// mpv and most encoders. The fallback for builds without FFmpeg, and a lossless reference for the MP4 path.
//
// Header: "YUV4MPEG2 W<w> H<h> F<fps>:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED", then "FRAME\n" + Y, Cb, Cr planes.
// C420jpeg (chroma sited at the centre of each 2x2 block) because a 2x2 mean is what we compute; the MP4 sink
// asks libswscale for the same (box filter, centred chroma) and flags it in the H.264 stream.
//
// Colour: BT.601 matrix, limited ("TV") range, the convention every player assumes for unflagged yuv420p:
//   Y  =  16 + 219/255 · ( 0.299    R + 0.587    G + 0.114    B)
//   Cb = 128 + 224/255 · (-0.168736 R - 0.331264 G + 0.5      B)
//   Cr = 128 + 224/255 · ( 0.5      R - 0.418688 G - 0.081312 B)
// R, G, B the 8-bit values (0..255); Cb and Cr from the mean R, G, B of each 2x2 block; rounded to nearest.
// So white is (235,128,128), black (16,128,128), pure red (81,90,240).
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "io/video_sink.h"

namespace ditrun::io {

// Packed RGB24 [h][w][3] (w, h even) -> planes Y [h][w], Cb and Cr [h/2][w/2], by the formulas above.
void rgb24_to_yuv420(const uint8_t* rgb, int width, int height, uint8_t* y, uint8_t* cb, uint8_t* cr);

class Y4mSink final : public VideoSink {
 public:
  Y4mSink(std::filesystem::path path, int width, int height, int fps);  // creates <path>.part, writes the header
  ~Y4mSink() override;

 private:
  void encode(const uint8_t* rgb24) override;
  void close_part() override;
  void write_all(const void* data, size_t bytes);

  std::FILE* file_ = nullptr;
  std::vector<uint8_t> yuv_;  // one frame's three planes, reused
};

}  // namespace ditrun::io

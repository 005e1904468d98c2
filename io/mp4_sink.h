// H.264 in MP4 through FFmpeg's libraries (libavcodec, libavformat, libswscale); built only when CMake finds them
// (DITRUN_WITH_FFMPEG). yuv420p, BT.601 limited range with centred chroma, the same conversion as the Y4M sink
// (y4m_sink.h); libx264 with the job's crf and preset, or another H.264 encoder when libx264 is absent.
// libav types stay out of this header.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "io/video_sink.h"

struct AVCodecContext;
struct AVFormatContext;
struct AVFrame;
struct AVPacket;
struct AVStream;
struct SwsContext;

namespace ditrun::io {

class Mp4Sink final : public VideoSink {
 public:
  // crf 0..51 (x264: 0 lossless, 18 visually lossless, 23 its default); preset one of x264's
  // (ultrafast .. veryslow). Opens the encoder and <path>.part and writes the container header.
  Mp4Sink(std::filesystem::path path, int width, int height, int fps, int crf = 18,
          const std::string& preset = "medium");
  ~Mp4Sink() override;

  const std::string& encoder_name() const { return encoder_name_; }

 private:
  void encode(const uint8_t* rgb24) override;
  void close_part() override;
  void send(const AVFrame* frame);  // one frame (or nullptr to flush) in, every packet ready written out
  void check(int rc, const std::string& call) const;
  void release();  // frees every libav object, closing the file without a trailer

  std::string encoder_name_;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* codec_ = nullptr;
  AVStream* stream_ = nullptr;  // owned by format_
  AVFrame* frame_ = nullptr;
  AVPacket* packet_ = nullptr;
  SwsContext* sws_ = nullptr;
  int64_t next_pts_ = 0;
};

}  // namespace ditrun::io

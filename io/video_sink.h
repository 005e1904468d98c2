// A video file being written one RGB frame at a time (MP4 through libav, or Y4M). Every sink writes
// `<path>.part` and renames it to `<path>` in finish(), so an output is complete or absent; a sink destroyed
// without finish() deletes its .part.
//
// Frames are planar float RGB [3][H][W] in [-1,1], as the VAE produces them; values outside are clamped and
// mapped to 8 bits as round((x+1)/2·255) (spec/wan21.md §4.4, last lines). Both sinks then store 4:2:0 YUV with
// the same conversion, so their pixels agree (see y4m_sink.h for the numbers).
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ditrun::io {

// what() is the whole line "<reason> (<path>)", the path being the video's final path.
class VideoError : public std::runtime_error {
 public:
  VideoError(const std::string& reason, const std::string& where)
      : std::runtime_error(reason + " (" + where + ")"), reason_(reason), where_(where) {}
  const std::string& reason() const noexcept { return reason_; }
  const std::string& where() const noexcept { return where_; }

 private:
  std::string reason_, where_;
};

// One [-1,1] value to 8 bits: clamp, (x+1)/2·255, round half up. NaN becomes 0 rather than undefined behaviour.
inline uint8_t quantize_unit(float x) {
  if (!(x > -1.0f)) return 0;
  if (x >= 1.0f) return 255;
  return static_cast<uint8_t>(std::floor((x + 1.0f) * 127.5f + 0.5f));
}

// Planar float [3][H][W] -> packed 8-bit RGB24 [H][W][3], the input of both sinks' colour conversion.
inline void planar_to_rgb24(const float* rgb, int width, int height, uint8_t* out) {
  const size_t plane = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < plane; ++i)
    for (size_t c = 0; c < 3; ++c) out[3 * i + c] = quantize_unit(rgb[c * plane + i]);
}

class VideoSink {
 public:
  // Checks the size and rate; the derived sink opens part_path() in its own constructor.
  VideoSink(std::filesystem::path path, int width, int height, int fps)
      : path_(std::move(path)), part_path_(path_.string() + ".part"), width_(width), height_(height), fps_(fps) {
    if (width < 2 || height < 2 || width > 16384 || height > 16384)
      fail("video size " + size_text() + " is out of range (2 to 16384 pixels a side)");
    // 4:2:0 keeps one chroma sample per 2x2 pixels, so both sides must be even.
    if (width % 2 || height % 2) fail("video width and height must be even for 4:2:0, got " + size_text());
    if (fps < 1 || fps > 240) fail("video fps must be 1 to 240, got " + std::to_string(fps));
  }
  // Not finished: the derived destructor has closed its file; delete what is left of it.
  virtual ~VideoSink() {
    if (finished_) return;
    std::error_code ec;
    std::filesystem::remove(part_path_, ec);
  }
  VideoSink(const VideoSink&) = delete;
  VideoSink& operator=(const VideoSink&) = delete;

  // One frame, planar float RGB [3][height][width] in [-1,1].
  void write_frame(const float* rgb) {
    if (finished_) fail("write_frame after finish");
    if (broken_) fail("an earlier write to this video failed");
    rgb24_.resize(static_cast<size_t>(width_) * height_ * 3);
    planar_to_rgb24(rgb, width_, height_, rgb24_.data());
    broken_ = true;  // until the encoder took the frame
    encode(rgb24_.data());
    broken_ = false;
    ++frames_;
  }

  // Completes the file (encoder flushed, container closed, synced) and renames the .part to the final path.
  // Later calls do nothing.
  void finish() {
    if (finished_) return;
    if (broken_) fail("an earlier write to this video failed");
    if (frames_ == 0) fail("no frames were written");
    broken_ = true;  // a failed close leaves a file that is not worth a second try
    close_part();
    sync_path(part_path_, true);
    std::error_code ec;
    std::filesystem::rename(part_path_, path_, ec);
    if (ec) fail("cannot rename " + part_path_.string() + ": " + ec.message());
    finished_ = true;
    sync_path(path_.parent_path().empty() ? "." : path_.parent_path(), false);  // the rename itself
  }

  int64_t frames_written() const { return frames_; }
  bool finished() const { return finished_; }
  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& part_path() const { return part_path_; }
  int width() const { return width_; }
  int height() const { return height_; }
  int fps() const { return fps_; }

 protected:
  // One frame as packed RGB24 [height][width][3]; throws VideoError.
  virtual void encode(const uint8_t* rgb24) = 0;
  // Everything still buffered written out and the file closed; throws VideoError.
  virtual void close_part() = 0;

  [[noreturn]] void fail(const std::string& reason) const { throw VideoError(reason, path_.string()); }

 private:
  std::string size_text() const { return std::to_string(width_) + "x" + std::to_string(height_); }

  // fsync so that a crash right after the rename cannot leave a complete-looking empty file.
  void sync_path(const std::filesystem::path& p, bool required) const {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (required) fail("cannot open " + p.string() + " for sync: " + std::strerror(errno));
      return;
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && required) fail("fsync of " + p.string() + " failed: " + std::strerror(err));
  }

  std::filesystem::path path_, part_path_;
  int width_, height_, fps_;
  int64_t frames_ = 0;
  bool finished_ = false;
  bool broken_ = false;  // a write or close threw: the file is unusable
  std::vector<uint8_t> rgb24_;  // reused between frames
};

}  // namespace ditrun::io

#include "io/y4m_sink.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

namespace ditrun::io {

namespace {
uint8_t round_u8(double v) { return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0)); }
}  // namespace

void rgb24_to_yuv420(const uint8_t* rgb, int width, int height, uint8_t* y, uint8_t* cb, uint8_t* cr) {
  constexpr double ky = 219.0 / 255.0, kc = 224.0 / 255.0;
  const size_t w = static_cast<size_t>(width);
  for (size_t i = 0; i < w * static_cast<size_t>(height); ++i) {
    const uint8_t* p = rgb + 3 * i;
    y[i] = round_u8(16.0 + ky * (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
  }
  const size_t cw = w / 2, ch = static_cast<size_t>(height) / 2;
  for (size_t cy = 0; cy < ch; ++cy)
    for (size_t cx = 0; cx < cw; ++cx) {
      double r = 0, g = 0, b = 0;
      for (size_t dy = 0; dy < 2; ++dy)
        for (size_t dx = 0; dx < 2; ++dx) {
          const uint8_t* p = rgb + 3 * ((2 * cy + dy) * w + 2 * cx + dx);
          r += p[0], g += p[1], b += p[2];
        }
      r *= 0.25, g *= 0.25, b *= 0.25;
      cb[cy * cw + cx] = round_u8(128.0 + kc * (-0.168736 * r - 0.331264 * g + 0.5 * b));
      cr[cy * cw + cx] = round_u8(128.0 + kc * (0.5 * r - 0.418688 * g - 0.081312 * b));
    }
}

Y4mSink::Y4mSink(std::filesystem::path path, int width, int height, int fps)
    : VideoSink(std::move(path), width, height, fps) {
  file_ = std::fopen(part_path().c_str(), "wb");
  if (!file_) fail("cannot create " + part_path().string() + ": " + std::strerror(errno));
  const std::string header = "YUV4MPEG2 W" + std::to_string(width) + " H" + std::to_string(height) + " F" +
                             std::to_string(fps) + ":1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n";
  try {
    write_all(header.data(), header.size());
  } catch (...) {
    std::fclose(std::exchange(file_, nullptr));  // this destructor does not run; the base removes the .part
    throw;
  }
}

Y4mSink::~Y4mSink() {
  if (file_) std::fclose(file_);  // the base removes the .part when not finished
}

void Y4mSink::write_all(const void* data, size_t bytes) {
  if (std::fwrite(data, 1, bytes, file_) != bytes)
    fail("cannot write " + part_path().string() + ": " + std::strerror(errno));
}

void Y4mSink::encode(const uint8_t* rgb24) {
  const size_t luma = static_cast<size_t>(width()) * height(), chroma = luma / 4;
  yuv_.resize(luma + 2 * chroma);
  rgb24_to_yuv420(rgb24, width(), height(), yuv_.data(), yuv_.data() + luma, yuv_.data() + luma + chroma);
  static constexpr char kFrame[] = "FRAME\n";
  write_all(kFrame, sizeof kFrame - 1);
  write_all(yuv_.data(), yuv_.size());
}

void Y4mSink::close_part() {
  std::FILE* f = std::exchange(file_, nullptr);
  const bool flushed = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !flushed)
    fail("cannot write " + part_path().string() + ": " + std::strerror(flushed ? errno : err));
}

}  // namespace ditrun::io

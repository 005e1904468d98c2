// io/ video sinks: the 8-bit mapping and BT.601 conversion by hand-computed values, a Y4M clip parsed back,
// an MP4 clip checked by ffprobe and decoded back with libav, MP4 and Y4M pixels agreeing, the .part rules,
// the writer's back-pressure and error passing, and every documented error message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "io/video_sink.h"
#include "io/video_writer.h"
#include "io/y4m_sink.h"

#ifdef DITRUN_WITH_FFMPEG
#include "io/mp4_sink.h"
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}
#endif

namespace fs = std::filesystem;
using namespace ditrun::io;

namespace {

constexpr int kW = 64, kH = 48, kFrames = 17, kFps = 16;

// A fresh folder per test, removed afterwards.
class VideoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("ditrun_video_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// Frame t of a smooth clip that moves: planar [3][h][w], a little beyond [-1,1] at the peaks to exercise clamping.
std::vector<float> clip_frame(int t, int w = kW, int h = kH) {
  std::vector<float> f(3 * static_cast<size_t>(w) * h);
  const double pi = std::acos(-1.0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x, plane = static_cast<size_t>(w) * h;
      f[i] = static_cast<float>(1.05 * std::sin(pi * double(x) / w + 2 * pi * double(t) / kFrames));
      f[plane + i] = static_cast<float>(0.9 * std::cos(pi * double(y) / h + 0.3 * t));
      f[2 * plane + i] = static_cast<float>(-0.8 + 1.6 * double(x + y + t) / (w + h + kFrames));
    }
  return f;
}

std::vector<float> solid_frame(float r, float g, float b, int w = kW, int h = kH) {
  const size_t plane = static_cast<size_t>(w) * h;
  std::vector<float> f(3 * plane);
  std::fill(f.begin(), f.begin() + plane, r);
  std::fill(f.begin() + plane, f.begin() + 2 * plane, g);
  std::fill(f.begin() + 2 * plane, f.end(), b);
  return f;
}

// The clip through make_video_sink + StreamingVideoWriter, as the job will write it.
void write_clip(const fs::path& path, int crf = 10, const std::string& preset = "medium") {
  StreamingVideoWriter writer(make_video_sink(path, kW, kH, kFps, crf, preset), 4);
  for (int t = 0; t < kFrames; ++t) writer.push(clip_frame(t));
  writer.finish();
  EXPECT_EQ(writer.frames_written(), kFrames);
}

// 8-bit value of channel c at (x, y) of a planar float frame, computed here from the documented mapping.
double rgb8(const std::vector<float>& f, int c, int x, int y, int w = kW, int h = kH) {
  const double v = std::clamp(double(f[(static_cast<size_t>(c) * h + y) * w + x]), -1.0, 1.0);
  return std::floor((v + 1.0) / 2.0 * 255.0 + 0.5);
}

// The documented BT.601 limited-range formulas (y4m_sink.h), written out again here.
int doc_y(double r, double g, double b) { return int(std::lround(16 + 219.0 / 255 * (0.299 * r + 0.587 * g + 0.114 * b))); }
int doc_cb(double r, double g, double b) {
  return int(std::lround(128 + 224.0 / 255 * (-0.168736 * r - 0.331264 * g + 0.5 * b)));
}
int doc_cr(double r, double g, double b) {
  return int(std::lround(128 + 224.0 / 255 * (0.5 * r - 0.418688 * g - 0.081312 * b)));
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Runs `f`, expects a VideoError whose one-line message holds every one of `parts`.
template <typename F>
void expect_video_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no VideoError";
  } catch (const VideoError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// One Y4M file: its header line and its frames' planes.
struct Y4m {
  std::string header;
  std::vector<std::string> frames;  // Y, Cb, Cr planes, each w*h*3/2 bytes
};

Y4m parse_y4m(const fs::path& p, int w, int h) {
  const std::string data = slurp(p);
  Y4m out;
  const size_t eol = data.find('\n');
  if (eol == std::string::npos) throw std::runtime_error("no header line");
  out.header = data.substr(0, eol);
  const size_t frame_bytes = static_cast<size_t>(w) * h * 3 / 2;
  size_t pos = eol + 1;
  while (pos < data.size()) {
    if (data.compare(pos, 6, "FRAME\n") != 0) throw std::runtime_error("no FRAME marker at byte " + std::to_string(pos));
    pos += 6;
    if (pos + frame_bytes > data.size()) throw std::runtime_error("truncated frame");
    out.frames.push_back(data.substr(pos, frame_bytes));
    pos += frame_bytes;
  }
  return out;
}

// A sink that records frames, can hold the worker inside encode() until released, and can fail on a frame.
class ProbeSink final : public VideoSink {
 public:
  ProbeSink(fs::path path, int fail_at = -1) : VideoSink(std::move(path), kW, kH, kFps), fail_at_(fail_at) {
    std::ofstream(part_path()) << "probe";
  }
  std::atomic<bool> hold{false};
  std::atomic<int> entered{0};

 private:
  void encode(const uint8_t*) override {
    const int n = entered++;
    while (hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (n == fail_at_) fail("probe fails on frame " + std::to_string(n));
  }
  void close_part() override {}
  int fail_at_;
};

}  // namespace

// ---- the 8-bit mapping and the colour conversion --------------------------------------------------------------

TEST(VideoConversion, QuantizeMapsMinusOneToOneOnto0To255WithClampAndRounding) {
  EXPECT_EQ(quantize_unit(-1.0f), 0);
  EXPECT_EQ(quantize_unit(1.0f), 255);
  EXPECT_EQ(quantize_unit(0.0f), 128);  // 127.5 rounds up
  EXPECT_EQ(quantize_unit(-3.0f), 0);
  EXPECT_EQ(quantize_unit(7.0f), 255);
  EXPECT_EQ(quantize_unit(std::nanf("")), 0);
  EXPECT_EQ(quantize_unit(2.0f * 100.4f / 255.0f - 1.0f), 100);
  EXPECT_EQ(quantize_unit(2.0f * 100.6f / 255.0f - 1.0f), 101);
  std::vector<float> planar = {-1.0f, 1.0f, 0.0f, 2.0f, -2.0f, 0.5f};  // 2x1 pixels, channels planar
  std::vector<uint8_t> packed(6);
  planar_to_rgb24(planar.data(), 2, 1, packed.data());
  EXPECT_EQ(packed, (std::vector<uint8_t>{0, 128, 0, 255, 255, 191}));
}

TEST(VideoConversion, Bt601LimitedRangeKnownColours) {
  struct Case {
    uint8_t r, g, b;
    int y, cb, cr;
  };
  // From the formulas in y4m_sink.h, worked out by hand.
  const Case cases[] = {{255, 255, 255, 235, 128, 128}, {0, 0, 0, 16, 128, 128},   {255, 0, 0, 81, 90, 240},
                        {0, 255, 0, 145, 54, 34},       {0, 0, 255, 41, 240, 110}, {128, 128, 128, 126, 128, 128}};
  for (const Case& c : cases) {
    std::vector<uint8_t> rgb(2 * 2 * 3);
    for (size_t i = 0; i < 4; ++i) rgb[3 * i] = c.r, rgb[3 * i + 1] = c.g, rgb[3 * i + 2] = c.b;
    uint8_t y[4], cb, cr;
    rgb24_to_yuv420(rgb.data(), 2, 2, y, &cb, &cr);
    for (uint8_t v : y) EXPECT_EQ(v, c.y) << int(c.r) << "," << int(c.g) << "," << int(c.b);
    EXPECT_EQ(cb, c.cb) << int(c.r) << "," << int(c.g) << "," << int(c.b);
    EXPECT_EQ(cr, c.cr) << int(c.r) << "," << int(c.g) << "," << int(c.b);
  }
  // Chroma is the conversion of the 2x2 block's mean colour: two white and two black pixels give mid grey.
  const std::vector<uint8_t> checker = {255, 255, 255, 0, 0, 0, 0, 0, 0, 255, 255, 255};
  uint8_t y[4], cb, cr;
  rgb24_to_yuv420(checker.data(), 2, 2, y, &cb, &cr);
  EXPECT_EQ(y[0], 235);
  EXPECT_EQ(y[1], 16);
  EXPECT_EQ(cb, 128);
  EXPECT_EQ(cr, 128);
}

// ---- Y4M -----------------------------------------------------------------------------------------------------

TEST_F(VideoTest, Y4mClipParsesBackWithDocumentedHeaderAndPixels) {
  const fs::path path = dir_ / "clip.y4m";
  write_clip(path);
  const Y4m y4m = parse_y4m(path, kW, kH);
  EXPECT_EQ(y4m.header, "YUV4MPEG2 W64 H48 F16:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED");
  ASSERT_EQ(y4m.frames.size(), size_t(kFrames));
  EXPECT_EQ(fs::file_size(path), y4m.header.size() + 1 + kFrames * (6 + kW * kH * 3 / 2));

  const size_t luma = kW * kH, chroma = luma / 4;
  for (int t : {0, 5, 16}) {
    const std::vector<float> f = clip_frame(t);
    const std::string& planes = y4m.frames[t];
    for (auto [x, y] : {std::pair{0, 0}, {37, 21}, {63, 47}, {10, 40}}) {
      const int expect = doc_y(rgb8(f, 0, x, y), rgb8(f, 1, x, y), rgb8(f, 2, x, y));
      EXPECT_EQ(uint8_t(planes[size_t(y) * kW + x]), expect) << "Y frame " << t << " at " << x << "," << y;
    }
    for (auto [cx, cy] : {std::pair{0, 0}, {7, 3}, {31, 23}}) {
      double r = 0, g = 0, b = 0;
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx)
          r += rgb8(f, 0, 2 * cx + dx, 2 * cy + dy) / 4, g += rgb8(f, 1, 2 * cx + dx, 2 * cy + dy) / 4,
              b += rgb8(f, 2, 2 * cx + dx, 2 * cy + dy) / 4;
      const size_t i = size_t(cy) * (kW / 2) + cx;
      EXPECT_EQ(uint8_t(planes[luma + i]), doc_cb(r, g, b)) << "Cb frame " << t << " at " << cx << "," << cy;
      EXPECT_EQ(uint8_t(planes[luma + chroma + i]), doc_cr(r, g, b)) << "Cr frame " << t << " at " << cx << "," << cy;
    }
  }
  // Frames differ (the clip moves) and a solid red frame is the documented (81, 90, 240) everywhere.
  EXPECT_NE(y4m.frames[0], y4m.frames[1]);
  const fs::path red = dir_ / "red.y4m";
  {
    Y4mSink sink(red, kW, kH, kFps);
    sink.write_frame(solid_frame(1.0f, -1.0f, -1.5f).data());
    sink.finish();
  }
  const Y4m r = parse_y4m(red, kW, kH);
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.frames[0], std::string(luma, char(81)) + std::string(chroma, char(90)) + std::string(chroma, char(240)));
}

// ---- MP4 -----------------------------------------------------------------------------------------------------

#ifdef DITRUN_WITH_FFMPEG
namespace {

// Absolute path of a program on $PATH, or "" when none.
std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path p = fs::path(dir.empty() ? "." : dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// ffprobe's key=value answer for the first video stream.
std::map<std::string, std::string> ffprobe(const std::string& ffprobe_bin, const fs::path& file) {
  const std::string cmd = "'" + ffprobe_bin + "' -v error -select_streams v:0 -count_frames -show_entries " +
                          "stream=codec_name,pix_fmt,width,height,nb_read_frames,avg_frame_rate,r_frame_rate," +
                          "color_range,color_space -of default=noprint_wrappers=1 '" + file.string() + "' 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) text += buf;
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("ffprobe failed: " + text);
  std::map<std::string, std::string> kv;
  std::stringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (const size_t eq = line.find('='); eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  return kv;
}


// Every frame of the first video stream, decoded by libav: planes Y, Cb, Cr packed without padding.
struct DecodedVideo {
  std::vector<std::string> frames;
  AVColorRange range = AVCOL_RANGE_UNSPECIFIED;
  AVColorSpace space = AVCOL_SPC_UNSPECIFIED;
  AVChromaLocation chroma_location = AVCHROMA_LOC_UNSPECIFIED;
};

void check_av(int rc, const char* call) {
  if (rc < 0) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(rc, buf, sizeof buf);
    throw std::runtime_error(std::string(call) + ": " + buf);
  }
}

DecodedVideo decode_mp4(const fs::path& path) {
  DecodedVideo out;
  AVFormatContext* fmt = nullptr;
  check_av(avformat_open_input(&fmt, path.c_str(), nullptr, nullptr), "avformat_open_input");
  std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> fmt_guard(fmt, [](AVFormatContext* f) {
    avformat_close_input(&f);
  });
  check_av(avformat_find_stream_info(fmt, nullptr), "avformat_find_stream_info");
  const AVCodec* decoder = nullptr;
  const int stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
  check_av(stream, "av_find_best_stream");
  std::unique_ptr<AVCodecContext, void (*)(AVCodecContext*)> ctx(avcodec_alloc_context3(decoder),
                                                                 [](AVCodecContext* c) { avcodec_free_context(&c); });
  check_av(avcodec_parameters_to_context(ctx.get(), fmt->streams[stream]->codecpar), "avcodec_parameters_to_context");
  check_av(avcodec_open2(ctx.get(), decoder, nullptr), "avcodec_open2");
  std::unique_ptr<AVPacket, void (*)(AVPacket*)> pkt(av_packet_alloc(), [](AVPacket* p) { av_packet_free(&p); });
  std::unique_ptr<AVFrame, void (*)(AVFrame*)> frame(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });

  auto drain = [&] {
    for (;;) {
      const int rc = avcodec_receive_frame(ctx.get(), frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      check_av(rc, "avcodec_receive_frame");
      if (frame->format != AV_PIX_FMT_YUV420P) throw std::runtime_error("decoded frame is not yuv420p");
      std::string planes;
      for (int p = 0; p < 3; ++p) {
        const int w = p ? frame->width / 2 : frame->width, h = p ? frame->height / 2 : frame->height;
        for (int y = 0; y < h; ++y)
          planes.append(reinterpret_cast<const char*>(frame->data[p] + size_t(y) * frame->linesize[p]), size_t(w));
      }
      out.frames.push_back(std::move(planes));
      out.range = frame->color_range;
      out.space = frame->colorspace;
      out.chroma_location = ctx->chroma_sample_location;
    }
  };
  while (av_read_frame(fmt, pkt.get()) >= 0) {
    if (pkt->stream_index == stream) check_av(avcodec_send_packet(ctx.get(), pkt.get()), "avcodec_send_packet");
    av_packet_unref(pkt.get());
    drain();
  }
  check_av(avcodec_send_packet(ctx.get(), nullptr), "avcodec_send_packet(flush)");
  drain();
  return out;
}

// Decoded frame `t` back to 8-bit RGB by the inverse of the documented conversion (chroma repeated over its 2x2
// block), and its mean absolute difference to the clip's 8-bit frame `input_t`, in 0..255 units.
double frame_mae(const DecodedVideo& video, int t, int input_t) {
  double sum = 0;
  const size_t luma = kW * kH, chroma = luma / 4;
  const std::vector<float> f = clip_frame(input_t);
  const std::string& p = video.frames.at(size_t(t));
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      const double yy = (uint8_t(p[size_t(y) * kW + x]) - 16.0) * 255.0 / 219.0;
      const size_t ci = size_t(y / 2) * (kW / 2) + x / 2;
      const double cb = (uint8_t(p[luma + ci]) - 128.0) * 255.0 / 224.0;
      const double cr = (uint8_t(p[luma + chroma + ci]) - 128.0) * 255.0 / 224.0;
      const double rgb[3] = {yy + 1.402 * cr, yy - 0.344136 * cb - 0.714136 * cr, yy + 1.772 * cb};
      for (int c = 0; c < 3; ++c) sum += std::abs(std::clamp(rgb[c], 0.0, 255.0) - rgb8(f, c, x, y));
    }
  return sum / double(3 * luma);
}

// Over the whole clip, every decoded frame against its own input frame.
double mean_abs_error(const DecodedVideo& video) {
  double sum = 0;
  for (int t = 0; t < kFrames; ++t) sum += frame_mae(video, t, t);
  return sum / kFrames;
}

}  // namespace

TEST_F(VideoTest, Mp4ClipHasH264Yuv420pSizeFrameCountAndRateByFfprobe) {
  const std::string bin = find_program("ffprobe");
  if (bin.empty()) GTEST_SKIP() << "ffprobe not found (Debian package ffmpeg; setup.sh installs it)";
  const fs::path path = dir_ / "clip.mp4";
  write_clip(path);
  const auto kv = ffprobe(bin, path);
  EXPECT_EQ(kv.at("codec_name"), "h264");
  EXPECT_EQ(kv.at("pix_fmt"), "yuv420p");
  EXPECT_EQ(kv.at("width"), "64");
  EXPECT_EQ(kv.at("height"), "48");
  EXPECT_EQ(kv.at("nb_read_frames"), "17");
  EXPECT_EQ(kv.at("avg_frame_rate"), "16/1");
  EXPECT_EQ(kv.at("r_frame_rate"), "16/1");
  EXPECT_EQ(kv.at("color_range"), "tv");
  EXPECT_EQ(kv.at("color_space"), "smpte170m");
  // +faststart: the index (moov) precedes the media data.
  const std::string bytes = slurp(path);
  ASSERT_NE(bytes.find("moov"), std::string::npos);
  EXPECT_LT(bytes.find("moov"), bytes.find("mdat"));
}

TEST_F(VideoTest, Mp4ClipDecodesBackCloseToTheInput) {
  const fs::path path = dir_ / "clip.mp4";
  write_clip(path, 10);
  const DecodedVideo video = decode_mp4(path);
  ASSERT_EQ(video.frames.size(), size_t(kFrames));
  EXPECT_EQ(video.range, AVCOL_RANGE_MPEG);
  EXPECT_EQ(video.space, AVCOL_SPC_SMPTE170M);
  EXPECT_EQ(video.chroma_location, AVCHROMA_LOC_CENTER);
  const double mae = mean_abs_error(video);
  std::printf("MP4 crf 10, %d frames %dx%d: mean absolute error %.3f / 255\n", kFrames, kW, kH, mae);
  EXPECT_LT(mae, 3.0);
  // Every frame in its place: closer to its own input than to its neighbours' (the clip moves).
  for (int t = 0; t < kFrames; ++t) {
    const double own = frame_mae(video, t, t);
    if (t > 0) {
      EXPECT_LT(own, frame_mae(video, t, t - 1)) << "frame " << t;
    }
    if (t + 1 < kFrames) {
      EXPECT_LT(own, frame_mae(video, t, t + 1)) << "frame " << t;
    }
  }
  // The part of the error that is 4:2:0 and 8-bit rounding alone (crf 0 is lossless): coding adds little to it.
  const fs::path lossless = dir_ / "lossless.mp4";
  write_clip(lossless, 0);
  const double floor_mae = mean_abs_error(decode_mp4(lossless));
  std::printf("MP4 crf 0 (lossless coding): mean absolute error %.3f / 255\n", floor_mae);
  EXPECT_LT(mae, floor_mae + 1.0);
  // A coarse crf must cost accuracy, or the crf option is not reaching the encoder.
  const fs::path coarse = dir_ / "coarse.mp4";
  write_clip(coarse, 45);
  const double coarse_mae = mean_abs_error(decode_mp4(coarse));
  std::printf("MP4 crf 45: mean absolute error %.3f / 255\n", coarse_mae);
  EXPECT_GT(coarse_mae, mae + 0.5);
}

TEST_F(VideoTest, Mp4LosslessPixelsAgreeWithY4m) {
  const fs::path mp4 = dir_ / "lossless.mp4", y4m = dir_ / "lossless.y4m";
  {
    Mp4Sink probe(dir_ / "probe.mp4", kW, kH, kFps, 0, "ultrafast");
    if (probe.encoder_name() != "libx264") GTEST_SKIP() << "crf 0 is lossless only with libx264";
  }
  write_clip(mp4, 0, "ultrafast");  // x264 at crf 0 is lossless, so the decoded planes are the converter's output
  write_clip(y4m);
  const DecodedVideo video = decode_mp4(mp4);
  const Y4m ref = parse_y4m(y4m, kW, kH);
  ASSERT_EQ(video.frames.size(), ref.frames.size());
  int max_diff = 0;
  double sum = 0;
  size_t n = 0;
  for (size_t t = 0; t < ref.frames.size(); ++t)
    for (size_t i = 0; i < ref.frames[t].size(); ++i, ++n) {
      const int d = std::abs(int(uint8_t(video.frames[t][i])) - int(uint8_t(ref.frames[t][i])));
      max_diff = std::max(max_diff, d);
      sum += d;
    }
  std::printf("MP4 (lossless) vs Y4M planes: max difference %d, mean %.4f\n", max_diff, sum / double(n));
  EXPECT_LE(max_diff, 1);  // libswscale's fixed-point rounding against our exact formulas
  EXPECT_LT(sum / double(n), 0.1);
}

TEST_F(VideoTest, Mp4OptionErrors) {
  expect_video_error([&] { make_video_sink(dir_ / "a.mp4", kW, kH, kFps, 52, "medium"); },
                     {"crf must be 0 to 51, got 52", "a.mp4"});
  {
    Mp4Sink probe(dir_ / "probe.mp4", kW, kH, kFps);
    if (probe.encoder_name() != "libx264") GTEST_SKIP() << "presets are libx264's";
  }
  expect_video_error([&] { make_video_sink(dir_ / "b.mp4", kW, kH, kFps, 18, "bogus"); },
                     {"cannot open H.264 encoder libx264 (crf 18, preset \"bogus\")", "b.mp4"});
  EXPECT_FALSE(fs::exists(dir_ / "b.mp4.part"));
}
#else
TEST_F(VideoTest, Mp4WithoutFfmpegSaysToUseY4m) {
  expect_video_error([&] { make_video_sink(dir_ / "a.mp4", kW, kH, kFps); }, {"without FFmpeg", "use .y4m", "a.mp4"});
}
#endif

// ---- .part files ---------------------------------------------------------------------------------------------

TEST_F(VideoTest, PartFileUntilFinishThenRenamed) {
  std::vector<std::string> names = {"p.y4m"};
  if (mp4_supported()) names.push_back("p.mp4");
  for (const std::string& name : names) {
    const fs::path path = dir_ / name, part = dir_ / (name + ".part");
    StreamingVideoWriter writer(make_video_sink(path, kW, kH, kFps), 2);
    for (int t = 0; t < 5; ++t) writer.push(clip_frame(t));
    EXPECT_TRUE(fs::exists(part)) << name;
    EXPECT_FALSE(fs::exists(path)) << name;
    writer.finish();
    EXPECT_TRUE(fs::exists(path)) << name;
    EXPECT_FALSE(fs::exists(part)) << name;
    EXPECT_EQ(writer.frames_written(), 5);
    writer.finish();  // a second finish does nothing
    EXPECT_TRUE(fs::exists(path)) << name;
  }
}

TEST_F(VideoTest, DestroyedWithoutFinishLeavesNothing) {
  std::vector<std::string> names = {"d.y4m"};
  if (mp4_supported()) names.push_back("d.mp4");
  for (const std::string& name : names) {
    const fs::path path = dir_ / name;
    {
      StreamingVideoWriter writer(make_video_sink(path, kW, kH, kFps), 4);
      for (int t = 0; t < 9; ++t) writer.push(clip_frame(t));
    }  // frames may still be queued: they are dropped
    EXPECT_FALSE(fs::exists(path)) << name;
    EXPECT_FALSE(fs::exists(dir_ / (name + ".part"))) << name;
    {
      const std::unique_ptr<VideoSink> sink = make_video_sink(path, kW, kH, kFps);
      sink->write_frame(clip_frame(0).data());
    }
    EXPECT_TRUE(fs::is_empty(dir_)) << name;
  }
}

// ---- the streaming writer ------------------------------------------------------------------------------------

TEST_F(VideoTest, WriterPushWaitsWhileTheQueueIsFull) {
  auto owned = std::make_unique<ProbeSink>(dir_ / "bp.y4m");
  ProbeSink& sink = *owned;
  sink.hold = true;
  StreamingVideoWriter writer(std::move(owned), 2);
  writer.push(clip_frame(0));  // the worker takes it and is held inside encode()
  while (sink.entered == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  writer.push(clip_frame(1));
  writer.push(clip_frame(2));  // queue full (2)
  auto blocked = std::async(std::launch::async, [&] { writer.push(clip_frame(3)); });
  EXPECT_EQ(blocked.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  sink.hold = false;
  EXPECT_EQ(blocked.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  blocked.get();
  writer.finish();
  EXPECT_EQ(writer.frames_written(), 4);
  EXPECT_TRUE(fs::exists(dir_ / "bp.y4m"));
}

TEST_F(VideoTest, WriterPassesTheWorkersErrorOnAndLeavesNoFile) {
  StreamingVideoWriter writer(std::make_unique<ProbeSink>(dir_ / "err.y4m", 2), 1);
  bool thrown = false;
  try {
    for (int t = 0; t < 50; ++t) writer.push(clip_frame(t));  // push() rethrows once the worker failed
    writer.finish();
  } catch (const VideoError& e) {
    thrown = true;
    EXPECT_EQ(std::string(e.what()), "probe fails on frame 2 (" + (dir_ / "err.y4m").string() + ")");
  }
  EXPECT_TRUE(thrown);
  expect_video_error([&] { writer.finish(); }, {"probe fails on frame 2"});  // the same error again
  EXPECT_FALSE(fs::exists(dir_ / "err.y4m"));
  EXPECT_FALSE(fs::exists(dir_ / "err.y4m.part"));
  // When the error comes with the last frames, finish() reports it.
  StreamingVideoWriter late(std::make_unique<ProbeSink>(dir_ / "late.y4m", 1), 4);
  late.push(clip_frame(0));
  late.push(clip_frame(1));
  expect_video_error([&] { late.finish(); }, {"probe fails on frame 1", "late.y4m"});
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(VideoTest, WriterRejectsAFrameOfTheWrongSize) {
  StreamingVideoWriter writer(make_video_sink(dir_ / "s.y4m", kW, kH, kFps), 2);
  EXPECT_THROW(writer.push(std::vector<float>(10)), std::invalid_argument);
  writer.push(clip_frame(0));
  writer.finish();
  expect_video_error([&] { writer.push(clip_frame(1)); }, {"push after finish"});
}

// ---- errors --------------------------------------------------------------------------------------------------

TEST_F(VideoTest, ErrorMessagesNameTheProblemAndThePath) {
  std::vector<std::string> exts = {".y4m"};
  if (mp4_supported()) exts.push_back(".mp4");
  for (const std::string& ext : exts) {
    const fs::path odd = dir_ / ("odd" + ext);
    expect_video_error([&] { make_video_sink(odd, 63, 48, kFps); },
                       {"video width and height must be even for 4:2:0, got 63x48", odd.string()});
    expect_video_error([&] { make_video_sink(odd, 64, 47, kFps); }, {"got 64x47"});
    expect_video_error([&] { make_video_sink(dir_ / ("fps" + ext), kW, kH, 0); }, {"video fps must be 1 to 240, got 0"});
    // A directory that does not exist, and a "directory" that is a file: unwritable even for root.
    const fs::path missing = dir_ / "no_such_dir" / ("v" + ext);
    expect_video_error([&] { make_video_sink(missing, kW, kH, kFps); },
                       {"cannot create " + missing.string() + ".part", "No such file or directory", missing.string()});
    std::ofstream(dir_ / "plain_file") << "x";
    const fs::path under_file = dir_ / "plain_file" / ("v" + ext);
    expect_video_error([&] { make_video_sink(under_file, kW, kH, kFps); },
                       {"cannot create " + under_file.string() + ".part", "Not a directory"});
    fs::remove(dir_ / "plain_file");
    // finish() without a frame.
    auto empty = make_video_sink(dir_ / ("empty" + ext), kW, kH, kFps);
    expect_video_error([&] { empty->finish(); }, {"no frames were written", "empty" + ext});
  }
  expect_video_error([&] { make_video_sink(dir_ / "clip.avi", kW, kH, kFps); },
                     {"unsupported video file extension \".avi\"", mp4_supported() ? ".mp4, .y4m" : ".y4m",
                      (dir_ / "clip.avi").string()});
  expect_video_error([&] { make_video_sink(dir_ / "noext", kW, kH, kFps); }, {"extension \"\""});
  // The extension is matched without regard to case.
  auto upper = make_video_sink(dir_ / "UP.Y4M", kW, kH, kFps);
  EXPECT_NE(dynamic_cast<Y4mSink*>(upper.get()), nullptr);
  upper.reset();
  EXPECT_TRUE(fs::is_empty(dir_));
}

#include "io/mp4_sink.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <cstdio>
#include <mutex>
#include <utility>

namespace ditrun::io {

namespace {

std::string av_error_text(int rc) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  if (av_strerror(rc, buf, sizeof buf) < 0) return "libav error " + std::to_string(rc);
  return buf;
}

// Options handed to libav; freed on every path. leftover() names those nobody took.
struct Options {
  AVDictionary* dict = nullptr;
  ~Options() { av_dict_free(&dict); }
  std::string leftover() const {
    std::string names;
    for (const AVDictionaryEntry* e = av_dict_get(dict, "", nullptr, AV_DICT_IGNORE_SUFFIX); e;
         e = av_dict_get(dict, "", e, AV_DICT_IGNORE_SUFFIX))
      names += std::string(names.empty() ? "" : ", ") + e->key;
    return names;
  }
};

// x264 prints statistics for every file at info level, which would flood a job's log; keep warnings and errors.
void quiet_libav() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (av_log_get_level() > AV_LOG_WARNING) av_log_set_level(AV_LOG_WARNING);
  });
}

}  // namespace

Mp4Sink::Mp4Sink(std::filesystem::path path, int width, int height, int fps, int crf, const std::string& preset)
    : VideoSink(std::move(path), width, height, fps) {
  if (crf < 0 || crf > 51) fail("crf must be 0 to 51, got " + std::to_string(crf));
  quiet_libav();
  // The base destructor removes the .part, but this destructor does not run when the constructor throws.
  try {
    const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
    const bool x264 = codec != nullptr;
    if (!codec) {
      codec = avcodec_find_encoder(AV_CODEC_ID_H264);
      if (!codec) fail("this FFmpeg has no H.264 encoder (libx264 or another); write .y4m instead");
      std::fprintf(stderr, "ditrun: warning: libx264 is not available, using H.264 encoder %s; crf and preset "
                   "are not applied (%s)\n", codec->name, this->path().c_str());
    }
    encoder_name_ = codec->name;

    check(avformat_alloc_output_context2(&format_, nullptr, "mp4", part_path().c_str()),
          "avformat_alloc_output_context2");

    codec_ = avcodec_alloc_context3(codec);
    if (!codec_) fail("avcodec_alloc_context3 failed: out of memory");
    codec_->width = width;
    codec_->height = height;
    codec_->time_base = AVRational{1, fps};  // one tick per frame
    codec_->framerate = AVRational{fps, 1};
    codec_->pix_fmt = AV_PIX_FMT_YUV420P;
    codec_->sample_aspect_ratio = AVRational{1, 1};
    // What the conversion below produces (y4m_sink.h), flagged so that players need not guess.
    codec_->color_range = AVCOL_RANGE_MPEG;
    codec_->colorspace = AVCOL_SPC_SMPTE170M;  // the BT.601 matrix
    codec_->chroma_sample_location = AVCHROMA_LOC_CENTER;
    if (format_->oformat->flags & AVFMT_GLOBALHEADER) codec_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

    Options codec_options;
    if (x264) {
      check(av_dict_set(&codec_options.dict, "crf", std::to_string(crf).c_str(), 0), "av_dict_set");
      check(av_dict_set(&codec_options.dict, "preset", preset.c_str(), 0), "av_dict_set");
    }
    const int rc = avcodec_open2(codec_, codec, &codec_options.dict);
    if (rc < 0)
      fail("cannot open H.264 encoder " + encoder_name_ + " (crf " + std::to_string(crf) + ", preset \"" + preset +
           "\"): " + av_error_text(rc));
    if (const std::string left = codec_options.leftover(); !left.empty())
      fail("H.264 encoder " + encoder_name_ + " does not know the option(s) " + left);

    stream_ = avformat_new_stream(format_, nullptr);
    if (!stream_) fail("avformat_new_stream failed");
    stream_->time_base = codec_->time_base;  // a hint; the muxer may pick another in avformat_write_header
    stream_->avg_frame_rate = codec_->framerate;
    check(avcodec_parameters_from_context(stream_->codecpar, codec_), "avcodec_parameters_from_context");

    if (const int open_rc = avio_open(&format_->pb, part_path().c_str(), AVIO_FLAG_WRITE); open_rc < 0)
      fail("cannot create " + part_path().string() + ": " + av_error_text(open_rc));
    Options format_options;
    // The index (moov) at the front, so the file plays while it downloads; the muxer rewrites the file at the end.
    check(av_dict_set(&format_options.dict, "movflags", "+faststart", 0), "av_dict_set");
    check(avformat_write_header(format_, &format_options.dict), "avformat_write_header");
    if (const std::string left = format_options.leftover(); !left.empty())
      fail("the MP4 muxer does not know the option(s) " + left);

    frame_ = av_frame_alloc();
    packet_ = av_packet_alloc();
    if (!frame_ || !packet_) fail("av_frame_alloc/av_packet_alloc failed: out of memory");
    frame_->format = AV_PIX_FMT_YUV420P;
    frame_->width = width;
    frame_->height = height;
    frame_->color_range = codec_->color_range;
    frame_->colorspace = codec_->colorspace;
    frame_->chroma_location = codec_->chroma_sample_location;
    check(av_frame_get_buffer(frame_, 0), "av_frame_get_buffer");

    // Box-filtered chroma sited at the centre of each 2x2 block, with accurate rounding: within one code value
    // of the Y4M sink's exact formulas.
    sws_ = sws_alloc_context();
    if (!sws_) fail("sws_alloc_context failed: out of memory");
    const std::pair<const char*, int64_t> sws_options[] = {
        {"srcw", width},
        {"srch", height},
        {"src_format", AV_PIX_FMT_RGB24},
        {"dstw", width},
        {"dsth", height},
        {"dst_format", AV_PIX_FMT_YUV420P},
        {"sws_flags", SWS_AREA | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP | SWS_BITEXACT},
        {"dst_h_chr_pos", 128},  // 1/256ths of a pixel: half-way between the two pixels
        {"dst_v_chr_pos", 128},
    };
    for (const auto& [name, value] : sws_options)
      check(av_opt_set_int(sws_, name, value, 0), std::string("av_opt_set_int(sws, ") + name + ")");
    check(sws_init_context(sws_, nullptr, nullptr), "sws_init_context");
    const int* bt601 = sws_getCoefficients(SWS_CS_ITU601);
    // Source RGB full range (0..255) to limited-range YUV; brightness 0, contrast and saturation 1.0 (16.16).
    if (sws_setColorspaceDetails(sws_, bt601, 1, bt601, 0, 0, 1 << 16, 1 << 16) < 0)
      fail("sws_setColorspaceDetails failed: BT.601 limited-range conversion not supported");
  } catch (...) {
    release();
    throw;
  }
}

Mp4Sink::~Mp4Sink() { release(); }

void Mp4Sink::check(int rc, const std::string& call) const {
  if (rc < 0) fail(call + " failed: " + av_error_text(rc));
}

void Mp4Sink::release() {
  sws_freeContext(std::exchange(sws_, nullptr));
  av_frame_free(&frame_);
  av_packet_free(&packet_);
  avcodec_free_context(&codec_);
  if (format_) {
    if (format_->pb) avio_closep(&format_->pb);
    avformat_free_context(std::exchange(format_, nullptr));
  }
  stream_ = nullptr;
}

void Mp4Sink::encode(const uint8_t* rgb24) {
  // The encoder may still hold the previous frame's buffer (lookahead); get a fresh one if so.
  check(av_frame_make_writable(frame_), "av_frame_make_writable");
  const uint8_t* src[1] = {rgb24};
  const int src_stride[1] = {3 * width()};
  const int rows = sws_scale(sws_, src, src_stride, 0, height(), frame_->data, frame_->linesize);
  if (rows != height()) check(rows < 0 ? rows : AVERROR_BUG, "sws_scale");
  frame_->pts = next_pts_++;
  send(frame_);
}

void Mp4Sink::send(const AVFrame* frame) {
  check(avcodec_send_frame(codec_, frame), frame ? "avcodec_send_frame" : "avcodec_send_frame(flush)");
  for (;;) {
    const int rc = avcodec_receive_packet(codec_, packet_);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;  // needs more input / fully drained
    check(rc, "avcodec_receive_packet");
    av_packet_rescale_ts(packet_, codec_->time_base, stream_->time_base);
    packet_->stream_index = stream_->index;
    check(av_interleaved_write_frame(format_, packet_), "av_interleaved_write_frame");  // unrefs the packet
  }
}

void Mp4Sink::close_part() {
  send(nullptr);  // drain the encoder's delayed frames
  check(av_write_trailer(format_), "av_write_trailer");
  check(avio_closep(&format_->pb), "avio_closep");
  release();
}

}  // namespace ditrun::io

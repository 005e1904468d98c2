#include "io/video_writer.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <utility>

#include "io/y4m_sink.h"
#ifdef DITRUN_WITH_FFMPEG
#include "io/mp4_sink.h"
#endif

namespace ditrun::io {

bool mp4_supported() {
#ifdef DITRUN_WITH_FFMPEG
  return true;
#else
  return false;
#endif
}

std::unique_ptr<VideoSink> make_video_sink(const std::filesystem::path& path, int width, int height, int fps,
                                           int crf, const std::string& preset) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".y4m") return std::make_unique<Y4mSink>(path, width, height, fps);
  if (ext == ".mp4") {
#ifdef DITRUN_WITH_FFMPEG
    return std::make_unique<Mp4Sink>(path, width, height, fps, crf, preset);
#else
    (void)crf, (void)preset;
    throw VideoError("this ditrun was built without FFmpeg (libav), so it cannot write .mp4; use .y4m",
                     path.string());
#endif
  }
  throw VideoError("unsupported video file extension \"" + path.extension().string() + "\"; supported: " +
                       (mp4_supported() ? ".mp4, .y4m" : ".y4m (.mp4 needs a build with FFmpeg)"),
                   path.string());
}

StreamingVideoWriter::StreamingVideoWriter(std::unique_ptr<VideoSink> sink, size_t capacity)
    : sink_(std::move(sink)), capacity_(capacity) {
  if (!sink_) throw std::invalid_argument("StreamingVideoWriter: no sink");
  if (capacity_ == 0) throw std::invalid_argument("StreamingVideoWriter: capacity must be at least 1");
  path_ = sink_->path();
  width_ = sink_->width();
  height_ = sink_->height();
  frame_size_ = 3 * static_cast<size_t>(width_) * height_;
  worker_ = std::thread([this] { run(); });
}

StreamingVideoWriter::~StreamingVideoWriter() {
  if (worker_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }
  sink_.reset();  // a sink that was not finished removes its .part
}

void StreamingVideoWriter::run() {
  for (;;) {
    std::vector<float> frame;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [this] { return stopping_ || closing_ || !queue_.empty(); });
      if (stopping_ || queue_.empty()) return;  // told to stop, or closing with everything written
      frame = std::move(queue_.front());
      queue_.pop_front();
    }
    changed_.notify_all();  // room for push()
    try {
      sink_->write_frame(frame.data());
    } catch (...) {
      {
        std::lock_guard lock(mutex_);
        error_ = std::current_exception();
        queue_.clear();
      }
      changed_.notify_all();  // wakes a push() waiting for room
      return;
    }
  }
}

void StreamingVideoWriter::push(std::vector<float> frame) {
  if (frame.size() != frame_size_)
    throw std::invalid_argument("video frame has " + std::to_string(frame.size()) + " values, expected " +
                                std::to_string(frame_size_) + " = 3x" + std::to_string(height_) + "x" +
                                std::to_string(width_) + " (" + path_.string() + ")");
  std::unique_lock lock(mutex_);
  if (closing_ || finished_) throw VideoError("push after finish", path_.string());
  changed_.wait(lock, [this] { return error_ || queue_.size() < capacity_; });
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(std::move(frame));
  lock.unlock();
  changed_.notify_all();
}

void StreamingVideoWriter::finish() {
  if (finished_) return;
  if (!sink_) throw VideoError("an earlier finish failed; the video was removed", path_.string());
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
  try {
    if (error_) std::rethrow_exception(error_);
    sink_->finish();
  } catch (...) {
    sink_.reset();  // removes the .part now rather than when the writer goes
    throw;
  }
  frames_written_ = sink_->frames_written();
  finished_ = true;
}

}  // namespace ditrun::io

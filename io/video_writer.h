// Streams frames to a video file from a worker thread, so the caller (the VAE decode loop) computes the next
// frames while the current ones are encoded. The queue is bounded: push() waits while it is full, which holds
// memory at `capacity` frames and lets a slow encoder slow the producer down instead of piling frames up.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/video_sink.h"

namespace ditrun::io {

// The sink for `path` by its extension (case-insensitive): .mp4 -> H.264 MP4 (libav; crf and preset apply),
// .y4m -> YUV4MPEG2. Anything else, or .mp4 in a build without FFmpeg, is a VideoError saying what to use.
std::unique_ptr<VideoSink> make_video_sink(const std::filesystem::path& path, int width, int height, int fps,
                                           int crf = 18, const std::string& preset = "medium");

// True when this build can write .mp4 (it found FFmpeg's libraries).
bool mp4_supported();

class StreamingVideoWriter {
 public:
  explicit StreamingVideoWriter(std::unique_ptr<VideoSink> sink, size_t capacity = 4);
  // Without finish(): stops the worker (queued frames are dropped) and removes the .part; nothing is left.
  ~StreamingVideoWriter();
  StreamingVideoWriter(const StreamingVideoWriter&) = delete;
  StreamingVideoWriter& operator=(const StreamingVideoWriter&) = delete;

  // One planar float RGB frame [3][height][width] in [-1,1]. Waits while `capacity` frames are queued. Throws the
  // worker's error at once if encoding failed, std::invalid_argument for a frame of the wrong size.
  void push(std::vector<float> frame);

  // Encodes what is queued, joins the worker, completes the file (renamed from .part). Rethrows an error of the
  // worker or of completing; then no file is left. Later calls do nothing.
  void finish();

  // Frames in the completed file; valid after finish().
  int64_t frames_written() const { return frames_written_; }
  const std::filesystem::path& path() const { return path_; }
  size_t capacity() const { return capacity_; }

 private:
  void run();  // the worker

  std::unique_ptr<VideoSink> sink_;
  std::filesystem::path path_;
  size_t capacity_, frame_size_;
  int width_, height_;
  int64_t frames_written_ = 0;
  bool finished_ = false;

  std::mutex mutex_;
  std::condition_variable changed_;  // queue, closing_, stopping_ or error_ changed
  std::deque<std::vector<float>> queue_;
  bool closing_ = false;   // no more frames will come (finish)
  bool stopping_ = false;  // drop the queue and stop now (destructor)
  std::exception_ptr error_;
  std::thread worker_;     // last: started once everything above exists
};

}  // namespace ditrun::io

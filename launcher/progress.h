// Progress on rank 0, readable both in a terminal and in a Slurm log file: plain timestamped lines, and bars
// that redraw in place only on a terminal (a file gets a line per tenth of the work instead of carriage returns).
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

namespace ditrun {

class Progress {
 public:
  // Prints only when enabled (rank 0). Terminal detection is on the stream's file descriptor.
  Progress(bool enabled, std::FILE* stream = stderr);

  void line(const std::string& text);
  // A bar for `done` of `total` units of `label`; call with increasing done; done == total ends it.
  void bar(const std::string& label, long done, long total);
  double elapsed() const;
  bool terminal() const { return terminal_; }

 private:
  void emit(const std::string& text, bool in_place);
  bool enabled_;
  std::FILE* stream_;
  bool terminal_;
  bool bar_open_ = false;
  long last_tenth_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ditrun

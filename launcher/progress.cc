#include "launcher/progress.h"

#include <unistd.h>

namespace ditrun {

Progress::Progress(bool enabled, std::FILE* stream)
    : enabled_(enabled), stream_(stream), terminal_(isatty(fileno(stream)) == 1),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::emit(const std::string& text, bool in_place) {
  if (!enabled_) return;
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "[ditrun %8.2fs] ", elapsed());
  if (in_place) {
    std::fprintf(stream_, "\r%s%s\033[K", stamp, text.c_str());
    bar_open_ = true;
  } else {
    if (bar_open_) std::fputc('\n', stream_);
    bar_open_ = false;
    std::fprintf(stream_, "%s%s\n", stamp, text.c_str());
  }
  std::fflush(stream_);
}

void Progress::line(const std::string& text) { emit(text, false); }

void Progress::bar(const std::string& label, long done, long total) {
  if (total <= 0) return;
  const int width = 30;
  const long filled = done * width / total;
  const std::string text = label + " [" + std::string(filled, '#') + std::string(width - filled, '.') + "] " +
                           std::to_string(done) + "/" + std::to_string(total);
  if (terminal_) {
    emit(text, true);
    if (done >= total) {
      std::fputc('\n', stream_);
      bar_open_ = false;
    }
    return;
  }
  // In a log file: one line at the start, at each further tenth, and at the end.
  const long tenth = done * 10 / total;
  if (done == 0 || done >= total || tenth > last_tenth_) emit(text, false);
  last_tenth_ = done >= total ? -1 : tenth;
}

}  // namespace ditrun

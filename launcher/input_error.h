// Bad user input (job file, manifest): the launcher prints `ditrun: error: <what()> (<where()>)` and exits 2.
#pragma once
#include <stdexcept>
#include <string>

namespace ditrun {

class InputError : public std::runtime_error {
 public:
  // `where` locates the fault: "job.toml: parallel.cfg", "prompts.jsonl:12", "job.toml:3:7".
  InputError(const std::string& what, std::string where)
      : std::runtime_error(one_line(what)), where_(one_line(std::move(where))) {}

  const std::string& where() const noexcept { return where_; }

 private:
  // The error must print as one line even when it quotes user text or a parser's message.
  static std::string one_line(std::string s) {
    for (char& c : s)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return s;
  }

  std::string where_;
};

}  // namespace ditrun

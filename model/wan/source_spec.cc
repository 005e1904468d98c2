#include "model/wan/source_spec.h"

#include <stdexcept>

namespace ditrun::wan {

std::optional<RandomSpec> parse_random_spec(const std::string& spec, const std::string& usage) {
  if (spec.rfind("random:", 0) != 0) return std::nullopt;
  RandomSpec r;
  r.config = spec.substr(7);
  if (const auto colon = r.config.find(':'); colon != std::string::npos) {
    try {
      r.seed = std::stoull(r.config.substr(colon + 1));
    } catch (const std::exception&) {
      throw std::runtime_error("bad seed in \"" + spec + "\" (" + usage + ")");
    }
    r.config = r.config.substr(0, colon);
  }
  return r;
}

std::filesystem::path component_folder(const std::string& spec, const std::string& component, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path dir = spec;
  if (fs::is_regular_file(dir / component / "config.json")) return dir / component;
  if (fs::is_regular_file(dir / "config.json")) return dir;
  throw std::runtime_error(what + " " + spec + " has neither " + component + "/config.json nor config.json" +
                           (fs::exists(dir) ? "" : " (no such folder)"));
}

}  // namespace ditrun::wan

#include "model/wan/dit_source.h"

#include <stdexcept>

namespace ditrun::wan {

std::string DitSource::describe() const {
  if (weights) return "model at " + weights->string();
  return config.name + " (random weights, seed " + std::to_string(seed) + ")";
}

DitSource resolve_dit_source(const std::string& spec) {
  DitSource s;
  s.spec = spec;
  if (spec == "tiny") {
    s.config = dit_config_tiny();
    return s;
  }
  if (spec.rfind("random:", 0) == 0) {
    std::string rest = spec.substr(7);
    if (const auto colon = rest.find(':'); colon != std::string::npos) {
      try {
        s.seed = std::stoull(rest.substr(colon + 1));
      } catch (const std::exception&) {
        throw std::runtime_error("bad seed in model \"" + spec + "\" (random:<tiny|1.3b|14b>[:seed])");
      }
      rest = rest.substr(0, colon);
    }
    s.config = dit_config_named(rest);
    return s;
  }
  namespace fs = std::filesystem;
  const fs::path dir = spec;
  fs::path folder;
  if (fs::is_regular_file(dir / "transformer" / "config.json")) folder = dir / "transformer";
  else if (fs::is_regular_file(dir / "config.json")) folder = dir;
  else
    throw std::runtime_error("model " + spec + " has neither transformer/config.json nor config.json" +
                             (fs::exists(dir) ? "" : " (no such folder)"));
  s.config = read_dit_config(folder / "config.json");
  s.weights = folder;
  check_dit_checkpoint(s.config, folder);
  return s;
}

DiT make_dit(Backend& backend, const DitSource& source) {
  DitWeights w = source.weights ? load_dit_weights(backend, source.config, *source.weights)
                                : random_dit_weights(backend, source.config, source.seed);
  return DiT(backend, source.config, std::move(w));
}

}  // namespace ditrun::wan

#include "model/wan/dit_source.h"

#include <stdexcept>

#include "model/wan/source_spec.h"

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
  if (const auto random = parse_random_spec(spec, "random:<tiny|1.3b|14b>[:seed]")) {
    s.config = dit_config_named(random->config);
    s.seed = random->seed;
    return s;
  }
  const std::filesystem::path folder = component_folder(spec, "transformer", "model");
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

#include "model/wan/vae_source.h"

#include <stdexcept>

#include "model/wan/source_spec.h"

namespace ditrun::wan {

std::string VaeSource::describe() const {
  if (weights) return "VAE " + weights->string();
  return "VAE " + config.name + " (random weights, seed " + std::to_string(seed) + ")";
}

VaeSource resolve_vae_source(const std::string& spec) {
  VaeSource s;
  s.spec = spec;
  if (spec == "tiny") {
    s.config = vae_config_tiny();
    return s;
  }
  if (const auto random = parse_random_spec(spec, "random:<tiny|wan2.1>[:seed]")) {
    if (random->config == "tiny") s.config = vae_config_tiny();
    else if (random->config == "wan2.1") s.config = vae_config_wan21();
    else throw std::runtime_error("unknown VAE config \"" + random->config + "\" in \"" + spec + "\" (tiny or wan2.1)");
    s.seed = random->seed;
    return s;
  }
  const std::filesystem::path folder = component_folder(spec, "vae", "VAE");
  s.config = read_vae_config(folder / "config.json");
  s.weights = folder;
  check_vae_checkpoint(s.config, folder);
  return s;
}

VaeDecoder make_vae_decoder(Backend& backend, const VaeSource& source) {
  VaeDecoderWeights w = source.weights ? load_vae_decoder_weights(backend, source.config, *source.weights)
                                       : random_vae_decoder_weights(backend, source.config, source.seed);
  return VaeDecoder(backend, source.config, std::move(w));
}

}  // namespace ditrun::wan

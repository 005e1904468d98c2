#include "model/wan/vae_source.h"

#include <stdexcept>

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
  if (spec.rfind("random:", 0) == 0) {
    std::string rest = spec.substr(7);
    if (const auto colon = rest.find(':'); colon != std::string::npos) {
      try {
        s.seed = std::stoull(rest.substr(colon + 1));
      } catch (const std::exception&) {
        throw std::runtime_error("bad seed in VAE \"" + spec + "\" (random:<tiny|wan2.1>[:seed])");
      }
      rest = rest.substr(0, colon);
    }
    if (rest == "tiny") s.config = vae_config_tiny();
    else if (rest == "wan2.1") s.config = vae_config_wan21();
    else throw std::runtime_error("unknown VAE config \"" + rest + "\" in \"" + spec + "\" (tiny or wan2.1)");
    return s;
  }
  namespace fs = std::filesystem;
  const fs::path dir = spec;
  fs::path folder;
  if (fs::is_regular_file(dir / "vae" / "config.json")) folder = dir / "vae";
  else if (fs::is_regular_file(dir / "config.json")) folder = dir;
  else
    throw std::runtime_error("VAE " + spec + " has neither vae/config.json nor config.json" +
                             (fs::exists(dir) ? "" : " (no such folder)"));
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

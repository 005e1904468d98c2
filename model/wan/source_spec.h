// How a model component is named on the command line and in job files, for every component (DiT, VAE):
// "random:<config>[:seed]" for seeded random weights, or a folder (a Diffusers model root with the component's
// subfolder, or that subfolder itself).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace ditrun::wan {

struct RandomSpec {
  std::string config;
  uint64_t seed = 0;
};

// The parts of "random:<config>[:seed]"; nullopt when spec does not start with "random:". A bad seed throws
// std::runtime_error quoting spec and `usage`.
std::optional<RandomSpec> parse_random_spec(const std::string& spec, const std::string& usage);

// <spec>/<component>/ when it holds config.json, else <spec>/ when it does; otherwise std::runtime_error naming
// `what` (e.g. "model", "VAE").
std::filesystem::path component_folder(const std::string& spec, const std::string& component, const std::string& what);

}  // namespace ditrun::wan

#include "partition/layout.h"

#include <sstream>

namespace ditrun::partition {

std::string Layout::describe() const {
  std::ostringstream s;
  s << "replicas " << replicas << " × cfg " << cfg << " × pipefusion " << pipefusion << " × ring " << ring
    << " × ulysses " << ulysses << " = " << dit_ranks() << " DiT ranks; VAE: ";
  if (vae_ranks > 0) s << vae_ranks << " dedicated"; else s << "shared with DiT ranks";
  s << "; text: ";
  if (text_ranks > 0) s << text_ranks << " dedicated"; else s << "shared with DiT ranks";
  return s.str();
}

namespace {

void require_positive(const char* key, int value) {
  if (value < 1)
    throw LayoutError(std::string("parallel.") + key,
                      std::string("parallel.") + key + " must be at least 1, got " + std::to_string(value));
}

}  // namespace

Layout resolve_layout(const LayoutRequest& request, int world_size) {
  if (world_size < 1) throw LayoutError("world", "world size must be at least 1, got " + std::to_string(world_size));
  require_positive("cfg", request.cfg);
  require_positive("pipefusion", request.pipefusion);
  require_positive("ring", request.ring);
  require_positive("ulysses", request.ulysses);
  if (request.replicas < 0)
    throw LayoutError("parallel.replicas",
                      "parallel.replicas must be at least 1 (or \"auto\"), got " + std::to_string(request.replicas));
  if (request.cfg != 1 && request.cfg != 2)
    throw LayoutError("parallel.cfg", "parallel.cfg must be 1 or 2 (conditional and unconditional passes), got " +
                                          std::to_string(request.cfg));
  if (request.vae_ranks < 0)
    throw LayoutError("parallel.vae_ranks", "parallel.vae_ranks must be 0 (shared) or more, got " +
                                                std::to_string(request.vae_ranks));
  if (request.text_ranks < 0)
    throw LayoutError("parallel.text_ranks", "parallel.text_ranks must be 0 (shared) or more, got " +
                                                 std::to_string(request.text_ranks));

  Layout layout;
  layout.cfg = request.cfg;
  layout.pipefusion = request.pipefusion;
  layout.ring = request.ring;
  layout.ulysses = request.ulysses;
  layout.vae_ranks = request.vae_ranks;
  layout.text_ranks = request.text_ranks;

  const long long dedicated = static_cast<long long>(request.vae_ranks) + request.text_ranks;
  if (dedicated >= world_size)
    throw LayoutError("parallel.vae_ranks",
                      "dedicated VAE + text ranks (" + std::to_string(dedicated) + ") leave no DiT rank among the " +
                          std::to_string(world_size) + " ranks");
  const long long per_replica = static_cast<long long>(request.cfg) * request.pipefusion * request.ring *
                                request.ulysses;
  const long long dit = world_size - dedicated;
  const std::string product = "cfg " + std::to_string(request.cfg) + " × pipefusion " +
                              std::to_string(request.pipefusion) + " × ring " + std::to_string(request.ring) +
                              " × ulysses " + std::to_string(request.ulysses) + " = " + std::to_string(per_replica);
  if (request.replicas == 0) {
    if (dit % per_replica != 0)
      throw LayoutError("parallel", "the " + std::to_string(dit) + " DiT ranks (" + std::to_string(world_size) +
                                        " ranks minus " + std::to_string(dedicated) +
                                        " dedicated) are not a multiple of " + product);
    layout.replicas = static_cast<int>(dit / per_replica);
  } else {
    layout.replicas = request.replicas;
    const long long need = per_replica * request.replicas + dedicated;
    if (need != world_size)
      throw LayoutError("parallel", "the layout needs " + std::to_string(need) + " ranks (replicas " +
                                        std::to_string(request.replicas) + " × " + product + " DiT + " +
                                        std::to_string(dedicated) + " dedicated) but the job has " +
                                        std::to_string(world_size));
  }
  return layout;
}

}  // namespace ditrun::partition

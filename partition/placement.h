// Placement by topology: which world rank takes which DiT mesh position and which ranks take the dedicated roles.
#pragma once
#include <string>
#include <vector>

#include "partition/layout.h"
#include "partition/topology.h"

namespace ditrun::partition {

struct Placement {
  std::vector<int> rank_of_mesh;   // DiT mesh index -> world rank
  std::vector<int> vae_ranks;      // dedicated VAE ranks (empty when shared)
  std::vector<int> text_ranks;     // dedicated text ranks (empty when shared)
  std::vector<std::string> warnings;  // e.g. a Ulysses group forced across hosts
};

// Ulysses groups carry the heaviest traffic (all-to-all every layer), so each is placed inside one host whenever
// the host sizes allow, independently of the launch order (block or round-robin). Consecutive mesh positions fill
// a host before the next, so ring and cfg neighbours also stay close. Dedicated role ranks take the slots left.
Placement place(const Layout& layout, const Topology& topology);

}  // namespace ditrun::partition

// Parallel layout: the degrees of the DiT mesh [replica][cfg][pipefusion][ring][ulysses] and the role ranks.
#pragma once
#include <stdexcept>
#include <string>

namespace ditrun::partition {

// A layout the user asked for is invalid. `key` names the setting at fault (e.g. "parallel.cfg").
class LayoutError : public std::runtime_error {
 public:
  LayoutError(std::string key, const std::string& what) : std::runtime_error(what), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

// What the user asked for. replicas = 0 means "as many as the ranks allow".
struct LayoutRequest {
  int replicas = 0;
  int cfg = 1;
  int pipefusion = 1;
  int ring = 1;
  int ulysses = 1;
  int vae_ranks = 0;   // dedicated VAE ranks; 0 = the DiT ranks decode (shared role)
  int text_ranks = 0;  // dedicated text-encoder ranks; 0 = the DiT ranks encode (shared role)
};

// A validated layout for a given world size.
struct Layout {
  int replicas = 1;
  int cfg = 1;
  int pipefusion = 1;
  int ring = 1;
  int ulysses = 1;
  int vae_ranks = 0;
  int text_ranks = 0;

  int sequence_parallel() const { return ring * ulysses; }
  int ranks_per_replica() const { return cfg * pipefusion * ring * ulysses; }
  int dit_ranks() const { return replicas * ranks_per_replica(); }
  int world_size() const { return dit_ranks() + vae_ranks + text_ranks; }
  bool dedicated_vae() const { return vae_ranks > 0; }
  bool dedicated_text() const { return text_ranks > 0; }
  std::string describe() const;  // "replicas 1 × cfg 2 × pipefusion 1 × ring 4 × ulysses 8 = 64 DiT ranks; ..."
};

// Checks every degree and fits the layout to world_size (filling in replicas when asked). Throws LayoutError.
Layout resolve_layout(const LayoutRequest& request, int world_size);

}  // namespace ditrun::partition

// Where every rank runs: the host of each world rank, as launched.
#pragma once
#include <string>
#include <vector>

namespace ditrun::partition {

// How a launcher spreads ranks over hosts: block fills host 0 first (mpirun's default --map-by slot),
// cyclic deals ranks round-robin (--map-by node, srun --distribution=cyclic).
enum class LaunchOrder { block, cyclic };

class Topology {
 public:
  explicit Topology(std::vector<std::string> host_of_rank);

  // gpus ranks on ceil(gpus / per_host) hosts named node000, node001, ... (for `ditrun plan`).
  static Topology uniform(int gpus, int gpus_per_host, LaunchOrder order);

  int world_size() const { return static_cast<int>(host_of_rank_.size()); }
  const std::string& host(int rank) const { return host_of_rank_.at(rank); }
  const std::vector<std::string>& host_of_rank() const { return host_of_rank_; }
  // Hosts in order of their first rank; each with its ranks in increasing order (= local rank order).
  const std::vector<std::string>& hosts() const { return hosts_; }
  const std::vector<std::vector<int>>& ranks_by_host() const { return ranks_by_host_; }
  int host_index(int rank) const { return host_index_of_rank_.at(rank); }

 private:
  std::vector<std::string> host_of_rank_;
  std::vector<std::string> hosts_;
  std::vector<std::vector<int>> ranks_by_host_;
  std::vector<int> host_index_of_rank_;
};

}  // namespace ditrun::partition

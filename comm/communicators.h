// Builds one communicator per group for this rank and checks every group with a small collective.
// Generic over what the groups mean: the launcher turns the partition plan into named sets of groups.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "comm/comm.h"

namespace ditrun::comm {

// All groups of one kind (e.g. "ulysses"): each a list of world ranks in group-rank order; a rank is in at most
// one group of a set.
struct GroupSet {
  std::string name;
  std::vector<std::vector<int>> groups;
};

enum class Backend { mpi, nccl };
const char* backend_name(Backend b);

struct GroupCheck {
  std::string set;
  int group = 0;
  std::vector<int> ranks;
  std::string alias_of;  // set whose communicator is reused (identical groups), or empty
  std::string backend;
  bool ok = false;
  double seconds = 0;    // slowest member's time for the check collectives
  std::string detail;    // what was wrong, when not ok
};

class Communicators {
 public:
  // Collective over MPI_COMM_WORLD; every rank passes the same sets in the same order. A set whose groups equal
  // an earlier set's reuses its communicators. With nccl, the CUDA device must already be selected.
  Communicators(const std::vector<GroupSet>& sets, Backend backend);
  ~Communicators();

  Backend backend() const { return backend_; }
  // This rank's communicator of set `name`, or nullptr when the rank is in no group of it.
  std::shared_ptr<Comm> get(const std::string& name) const;
  // Group index of this rank in set `name`, or -1.
  int group_index(const std::string& name) const;

  // Collective over MPI_COMM_WORLD: an all-reduce of (world rank + 1) and an all-gather of world ranks on every
  // communicator, compared with the ranks each group should hold. World rank 0 gets every group's result;
  // other ranks get an empty list.
  std::vector<GroupCheck> check() const;

 private:
  struct Entry {
    std::string name;
    std::vector<std::vector<int>> groups;
    int my_group = -1;
    std::string alias_of;
    std::shared_ptr<Comm> comm;
  };
  Backend backend_;
  std::vector<Entry> entries_;
};

}  // namespace ditrun::comm

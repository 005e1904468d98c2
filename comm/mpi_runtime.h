// MPI bootstrap: initialises MPI, learns where every rank runs, and ends the job cleanly or promptly.
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

namespace ditrun::comm {

class MpiRuntime {
 public:
  // Initialises MPI (singleton mode when not started by mpirun/srun) with errors returned, not fatal.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();  // MPI_Finalize
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Host name of every world rank (MPI_Get_processor_name, gathered).
  const std::vector<std::string>& hosts() const { return hosts_; }
  // Rank among the ranks of this host, and how many share it (from a shared-memory split).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  // Agreement over all ranks (collective).
  int max_over_ranks(int value) const;
  int min_over_ranks(int value) const;
  double max_over_ranks(double value) const;
  void barrier() const;
  // Every rank's text on world rank 0 (in rank order); other ranks get an empty list.
  std::vector<std::string> gather_to_root(const std::string& text) const;

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::vector<std::string> hosts_;
};

}  // namespace ditrun::comm

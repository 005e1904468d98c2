// MPI bootstrap: initialises MPI, learns where every rank runs, and ends the job cleanly or promptly.
#pragma once
#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

namespace ditrun::comm {

// Where the launcher says this process is, read from its environment apart from MPI so that the two can be
// checked against each other. mpirun (Open MPI) exports OMPI_COMM_WORLD_*; srun exports SLURM_PROCID,
// SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_NODEID to each task of a step. Under mpirun inside a batch script the
// SLURM_* task variables are the batch step's (rank 0 of N) and are ignored.
struct LaunchPlace {
  std::string launcher = "none";  // "mpirun", "srun" or "none" (a single process, or a launcher not known)
  int rank = -1, size = -1;        // -1 where the launcher says nothing
  int local_rank = -1, local_size = -1;
  int node = -1;                     // SLURM_NODEID (srun only)
  std::string local_rank_variable;   // the variable local_rank came from
  std::string problem;               // a variable that is set but does not parse (one line)
};

// Reads the launcher's variables through `getenv` (tests pass their own); never throws.
LaunchPlace read_launch_place(const std::function<const char*(const char*)>& getenv);
// "4(x2),3" (SLURM_STEP_TASKS_PER_NODE) -> {4, 4, 3}; empty when malformed.
std::vector<int> parse_tasks_per_node(const std::string& text);
// Empty when `place` agrees with MPI's rank and size; else one line saying what disagrees and what to do.
std::string check_launch_place(const LaunchPlace& place, int mpi_rank, int mpi_size);

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
  // Rank among the ranks of this host, and how many share it: the launcher's (SLURM_LOCALID,
  // OMPI_COMM_WORLD_LOCAL_RANK, ...) when it gives them, else MPI's shared-memory split.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // MPI's own answer (shared-memory split), for comparison with the launcher's.
  int shared_memory_local_rank() const { return shm_local_rank_; }
  int shared_memory_local_size() const { return shm_local_size_; }
  // What the launcher's environment said, and whether it disagrees with MPI (empty when it agrees).
  const LaunchPlace& launch_place() const { return place_; }
  const std::string& launch_problem() const { return launch_problem_; }

  // Agreement over all ranks (collective).
  int max_over_ranks(int value) const;
  int min_over_ranks(int value) const;
  double max_over_ranks(double value) const;
  void barrier() const;
  // Every rank's text on world rank 0 (in rank order); other ranks get an empty list.
  std::vector<std::string> gather_to_root(const std::string& text) const;
  // The largest message tag this MPI takes (MPI_TAG_UB: at least 32767 by the standard, often far more).
  int tag_upper_bound() const;
  // Host buffers between two ranks (world ranks; the tag tells messages apart): a prompt's final latents going
  // from the DiT rank that writes them to a dedicated VAE rank. send blocks until MPI has taken the data.
  void send_floats(const std::vector<float>& data, int to, int tag) const;
  std::vector<float> receive_floats(int from, int tag) const;  // any length
  // The same for bytes: the text role's new embedding-cache entries (their texts) going to the rank that writes
  // the cache file.
  void send_bytes(const std::string& data, int to, int tag) const;
  std::string receive_bytes(int from, int tag) const;  // any length

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int shm_local_rank_ = 0;
  int shm_local_size_ = 1;
  LaunchPlace place_;
  std::string launch_problem_;
  std::vector<std::string> hosts_;
};

}  // namespace ditrun::comm

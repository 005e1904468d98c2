#include "comm/mpi_runtime.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "comm/error.h"

namespace ditrun::comm {

namespace {

// A whole non-negative decimal number, or -1.
int parse_count(const char* text) {
  if (!text || !*text) return -1;
  const char* end = text + std::strlen(text);
  int value = -1;
  const auto [ptr, ec] = std::from_chars(text, end, value);
  return ec == std::errc() && ptr == end && value >= 0 ? value : -1;
}

// Reads variable `name` into `out` when it is set; a value that does not parse is recorded as the problem.
void read_count(const std::function<const char*(const char*)>& getenv, const char* name, int& out,
                LaunchPlace& place) {
  const char* text = getenv(name);
  if (!text) return;
  out = parse_count(text);
  if (out < 0 && place.problem.empty())
    place.problem = std::string(name) + "=\"" + text + "\" is not a non-negative integer";
}

}  // namespace

std::vector<int> parse_tasks_per_node(const std::string& text) {
  std::vector<int> out;
  if (!text.empty() && text.back() == ',') return {};
  size_t i = 0;
  while (i < text.size()) {
    const size_t comma = std::min(text.find(',', i), text.size());
    const std::string item = text.substr(i, comma - i);
    const size_t paren = item.find('(');
    int count = parse_count(item.substr(0, paren).c_str()), times = 1;
    if (paren != std::string::npos) {
      if (item.size() < paren + 4 || item.compare(paren, 2, "(x") != 0 || item.back() != ')') return {};
      times = parse_count(item.substr(paren + 2, item.size() - paren - 3).c_str());
    }
    if (count < 0 || times < 1) return {};
    out.insert(out.end(), times, count);
    i = comma + 1;
  }
  return out;
}

LaunchPlace read_launch_place(const std::function<const char*(const char*)>& getenv) {
  LaunchPlace p;
  if (getenv("OMPI_COMM_WORLD_RANK") || getenv("OMPI_COMM_WORLD_SIZE")) {
    // mpirun launched us; any SLURM_* task variables were inherited from the step that ran mpirun.
    p.launcher = "mpirun";
    read_count(getenv, "OMPI_COMM_WORLD_RANK", p.rank, p);
    read_count(getenv, "OMPI_COMM_WORLD_SIZE", p.size, p);
    read_count(getenv, "OMPI_COMM_WORLD_LOCAL_RANK", p.local_rank, p);
    read_count(getenv, "OMPI_COMM_WORLD_LOCAL_SIZE", p.local_size, p);
    if (p.local_rank >= 0) p.local_rank_variable = "OMPI_COMM_WORLD_LOCAL_RANK";
  } else if (getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID")) {
    // A task of an srun step (the batch script itself has SLURM_PROCID but no SLURM_STEP_ID).
    p.launcher = "srun";
    read_count(getenv, "SLURM_PROCID", p.rank, p);
    // SLURM_NTASKS can be the allocation's count; the step's own is SLURM_STEP_NUM_TASKS where Slurm sets it.
    read_count(getenv, getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS", p.size, p);
    read_count(getenv, "SLURM_LOCALID", p.local_rank, p);
    read_count(getenv, "SLURM_NODEID", p.node, p);
    if (p.local_rank >= 0) p.local_rank_variable = "SLURM_LOCALID";
    const char* per_node = getenv("SLURM_STEP_TASKS_PER_NODE");
    if (per_node && p.node >= 0) {
      const std::vector<int> counts = parse_tasks_per_node(per_node);
      if (p.node < static_cast<int>(counts.size())) p.local_size = counts[p.node];
    }
  }
  return p;
}

std::string check_launch_place(const LaunchPlace& p, int mpi_rank, int mpi_size) {
  if (!p.problem.empty()) return p.problem;
  const std::string& who = p.launcher;
  if (p.size >= 0 && p.size != mpi_size) {
    if (mpi_size == 1 && who == "srun")
      return "srun started " + std::to_string(p.size) +
             " tasks but MPI sees each as a job of 1 rank (this is task " + std::to_string(p.rank) +
             "): launch with srun --mpi=pmix (the plugin matching your MPI), or with mpirun";
    return who + " started " + std::to_string(p.size) + " processes but MPI sees " + std::to_string(mpi_size) +
           " ranks: is ditrun built against the MPI of this " + who + "?";
  }
  if (p.rank >= 0 && p.rank != mpi_rank)
    return who + " says this process is rank " + std::to_string(p.rank) + " but MPI says rank " +
           std::to_string(mpi_rank);
  if (p.local_rank >= 0 && p.local_size >= 0 && p.local_rank >= p.local_size)
    return who + " gives local rank " + std::to_string(p.local_rank) + " of only " + std::to_string(p.local_size) +
           " on this host";
  return "";
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = 0;
  // FUNNELED: only the main thread calls MPI; helper threads (video encoder) never do.
  DITRUN_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  DITRUN_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  DITRUN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  DITRUN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));

  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  DITRUN_MPI_CHECK(MPI_Get_processor_name(name, &length));
  std::vector<char> all(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  DITRUN_MPI_CHECK(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                                 MPI_COMM_WORLD));
  hosts_.reserve(size_);
  for (int r = 0; r < size_; ++r) {
    const char* h = all.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME;
    hosts_.emplace_back(h, strnlen(h, MPI_MAX_PROCESSOR_NAME));
  }

  MPI_Comm local = MPI_COMM_NULL;
  DITRUN_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
  DITRUN_MPI_CHECK(MPI_Comm_rank(local, &shm_local_rank_));
  DITRUN_MPI_CHECK(MPI_Comm_size(local, &shm_local_size_));
  DITRUN_MPI_CHECK(MPI_Comm_free(&local));

  // The launcher's local rank wins where it gives one: it is what the launcher (and Slurm's GPU binding) used.
  place_ = read_launch_place([](const char* name) { return std::getenv(name); });
  launch_problem_ = check_launch_place(place_, rank_, size_);
  local_rank_ = place_.local_rank >= 0 ? place_.local_rank : shm_local_rank_;
  local_size_ = place_.local_size > 0 ? place_.local_size : shm_local_size_;
  if (place_.local_rank >= 0 && place_.local_size < 0) local_size_ = std::max(local_size_, local_rank_ + 1);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int MpiRuntime::max_over_ranks(int value) const {
  int out = 0;
  DITRUN_MPI_CHECK(MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return out;
}

int MpiRuntime::min_over_ranks(int value) const {
  int out = 0;
  DITRUN_MPI_CHECK(MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return out;
}

double MpiRuntime::max_over_ranks(double value) const {
  double out = 0;
  DITRUN_MPI_CHECK(MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return out;
}

std::vector<std::string> MpiRuntime::gather_to_root(const std::string& text) const {
  const int length = static_cast<int>(text.size());
  std::vector<int> lengths(rank_ == 0 ? size_ : 0), offsets(rank_ == 0 ? size_ : 0);
  DITRUN_MPI_CHECK(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  std::vector<char> all;
  if (rank_ == 0) {
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = total;
      total += lengths[r];
    }
    all.resize(static_cast<size_t>(total));
  }
  DITRUN_MPI_CHECK(MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                               MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; rank_ == 0 && r < size_; ++r) out.emplace_back(all.data() + offsets[r], lengths[r]);
  return out;
}

void MpiRuntime::barrier() const { DITRUN_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

int MpiRuntime::tag_upper_bound() const {
  int* value = nullptr;
  int found = 0;
  DITRUN_MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &value, &found));
  return found && value ? *value : 32767;
}

void MpiRuntime::send_floats(const std::vector<float>& data, int to, int tag) const {
  if (data.size() > static_cast<size_t>(INT_MAX)) throw CommError("send_floats: more than INT_MAX values");
  DITRUN_MPI_CHECK(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_FLOAT, to, tag, MPI_COMM_WORLD));
}

std::vector<float> MpiRuntime::receive_floats(int from, int tag) const {
  MPI_Status status;
  DITRUN_MPI_CHECK(MPI_Probe(from, tag, MPI_COMM_WORLD, &status));
  int count = 0;
  DITRUN_MPI_CHECK(MPI_Get_count(&status, MPI_FLOAT, &count));
  std::vector<float> data(static_cast<size_t>(count));
  DITRUN_MPI_CHECK(MPI_Recv(data.data(), count, MPI_FLOAT, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
  return data;
}

void MpiRuntime::send_bytes(const std::string& data, int to, int tag) const {
  if (data.size() > static_cast<size_t>(INT_MAX)) throw CommError("send_bytes: more than INT_MAX bytes");
  DITRUN_MPI_CHECK(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_CHAR, to, tag, MPI_COMM_WORLD));
}

std::string MpiRuntime::receive_bytes(int from, int tag) const {
  MPI_Status status;
  DITRUN_MPI_CHECK(MPI_Probe(from, tag, MPI_COMM_WORLD, &status));
  int count = 0;
  DITRUN_MPI_CHECK(MPI_Get_count(&status, MPI_CHAR, &count));
  std::string data(static_cast<size_t>(count), '\0');
  DITRUN_MPI_CHECK(MPI_Recv(data.data(), count, MPI_CHAR, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
  return data;
}

}  // namespace ditrun::comm

#include "comm/mpi_runtime.h"

#include <cstring>

#include "comm/error.h"

namespace ditrun::comm {

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
  DITRUN_MPI_CHECK(MPI_Comm_rank(local, &local_rank_));
  DITRUN_MPI_CHECK(MPI_Comm_size(local, &local_size_));
  DITRUN_MPI_CHECK(MPI_Comm_free(&local));
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

}  // namespace ditrun::comm

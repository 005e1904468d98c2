#include "comm/communicators.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "comm/error.h"
#include "comm/mpi_comm.h"

#ifdef DITRUN_WITH_CUDA
#include "comm/cuda_check.h"
#include "comm/nccl_comm.h"
#endif

namespace ditrun::comm {

const char* backend_name(Backend b) { return b == Backend::nccl ? "nccl" : "mpi"; }

Communicators::Communicators(const std::vector<GroupSet>& sets, Backend backend) : backend_(backend) {
#ifndef DITRUN_WITH_CUDA
  if (backend == Backend::nccl) throw CommError("NCCL communicators need a CUDA build of ditrun");
#endif
  int world_rank = 0;
  DITRUN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  for (const GroupSet& set : sets) {
    Entry e;
    e.name = set.name;
    e.groups = set.groups;
    for (size_t g = 0; g < set.groups.size(); ++g) {
      const auto& ranks = set.groups[g];
      if (std::find(ranks.begin(), ranks.end(), world_rank) != ranks.end()) e.my_group = static_cast<int>(g);
    }
    // Identical groups (e.g. sp = ulysses when ring = 1) share one communicator; every rank decides alike.
    for (const Entry& earlier : entries_)
      if (earlier.groups == e.groups) {
        e.alias_of = earlier.alias_of.empty() ? earlier.name : earlier.alias_of;
        e.comm = earlier.comm;
        break;
      }
    if (e.alias_of.empty()) {
      int color = MPI_UNDEFINED, key = 0;
      if (e.my_group >= 0) {
        const auto& ranks = set.groups[e.my_group];
        color = e.my_group;
        key = static_cast<int>(std::find(ranks.begin(), ranks.end(), world_rank) - ranks.begin());
      }
      MPI_Comm split = MPI_COMM_NULL;
      DITRUN_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, key, &split));
      if (split != MPI_COMM_NULL) {
        const std::string name = set.name + "[" + std::to_string(e.my_group) + "]";
#ifdef DITRUN_WITH_CUDA
        if (backend == Backend::nccl) e.comm = std::make_shared<NcclComm>(name, split);
        else e.comm = std::make_shared<MpiComm>(name, split);
#else
        e.comm = std::make_shared<MpiComm>(name, split);
#endif
      }
    }
    entries_.push_back(std::move(e));
  }
}

Communicators::~Communicators() = default;

std::shared_ptr<Comm> Communicators::get(const std::string& name) const {
  for (const Entry& e : entries_)
    if (e.name == name) return e.comm;
  throw CommError("no communicator set named " + name);
}

int Communicators::group_index(const std::string& name) const {
  for (const Entry& e : entries_)
    if (e.name == name) return e.my_group;
  throw CommError("no communicator set named " + name);
}

namespace {

// Buffers for the check in the communicator's memory.
struct CheckBuffers {
  Memory memory;
  int64_t* sum = nullptr;
  int32_t* mine = nullptr;
  int32_t* gathered = nullptr;
  size_t n;
  CheckBuffers(Memory m, size_t members) : memory(m), n(members) {
    if (memory == Memory::device) {
#ifdef DITRUN_WITH_CUDA
      DITRUN_CUDA_CHECK(cudaMalloc(&sum, sizeof(int64_t)));
      DITRUN_CUDA_CHECK(cudaMalloc(&mine, sizeof(int32_t)));
      DITRUN_CUDA_CHECK(cudaMalloc(&gathered, n * sizeof(int32_t)));
#endif
    } else {
      sum = new int64_t;
      mine = new int32_t;
      gathered = new int32_t[n];
    }
  }
  ~CheckBuffers() {
    if (memory == Memory::device) {
#ifdef DITRUN_WITH_CUDA
      cudaFree(sum);
      cudaFree(mine);
      cudaFree(gathered);
#endif
    } else {
      delete sum;
      delete mine;
      delete[] gathered;
    }
  }
  void put(void* dst, const void* src, size_t bytes) {
#ifdef DITRUN_WITH_CUDA
    if (memory == Memory::device) {
      DITRUN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
      return;
    }
#endif
    std::copy_n(static_cast<const char*>(src), bytes, static_cast<char*>(dst));
  }
  void get(void* dst, const void* src, size_t bytes) {
#ifdef DITRUN_WITH_CUDA
    if (memory == Memory::device) {
      DITRUN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
      return;
    }
#endif
    std::copy_n(static_cast<const char*>(src), bytes, static_cast<char*>(dst));
  }
};

// One row per (rank, set) gathered on rank 0.
struct CheckRow {
  int32_t group;
  int32_t ok;
  double seconds;
  char detail[160];
};

}  // namespace

std::vector<GroupCheck> Communicators::check() const {
  int world_rank = 0, world_size = 1;
  DITRUN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  DITRUN_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));

  std::vector<CheckRow> mine(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    CheckRow& row = mine[i];
    row = CheckRow{e.my_group, 1, 0.0, {}};
    if (e.my_group < 0) continue;
    const auto& ranks = e.groups[e.my_group];
    Comm& comm = *e.comm;
    std::string detail;
    if (comm.size() != static_cast<int>(ranks.size()))
      detail = "communicator has " + std::to_string(comm.size()) + " ranks, the group " + std::to_string(ranks.size());
    const auto start = std::chrono::steady_clock::now();
    CheckBuffers buf(comm.memory(), ranks.size());
    const int64_t contribution = world_rank + 1;
    const int32_t me = world_rank;
    buf.put(buf.sum, &contribution, sizeof contribution);
    buf.put(buf.mine, &me, sizeof me);
    comm.all_reduce(buf.sum, buf.sum, 1, DType::i64, ReduceOp::sum, Stream{});
    comm.all_gather(buf.mine, buf.gathered, 1, DType::i32, Stream{});
    comm.synchronize(Stream{});
    int64_t sum = 0;
    std::vector<int32_t> gathered(ranks.size());
    buf.get(&sum, buf.sum, sizeof sum);
    buf.get(gathered.data(), buf.gathered, gathered.size() * sizeof(int32_t));
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int64_t expect = std::accumulate(ranks.begin(), ranks.end(), int64_t{0}) + static_cast<int64_t>(ranks.size());
    if (detail.empty() && sum != expect)
      detail = "all-reduce gave " + std::to_string(sum) + ", expected " + std::to_string(expect);
    if (detail.empty() && !std::equal(gathered.begin(), gathered.end(), ranks.begin()))
      detail = "all-gather order does not match the group's ranks";
    if (!detail.empty()) {
      row.ok = 0;
      detail.copy(row.detail, sizeof row.detail - 1);
    }
  }

  std::vector<CheckRow> all(world_rank == 0 ? entries_.size() * world_size : 0);
  const int bytes = static_cast<int>(entries_.size() * sizeof(CheckRow));
  DITRUN_MPI_CHECK(MPI_Gather(mine.data(), bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, 0, MPI_COMM_WORLD));
  std::vector<GroupCheck> results;
  if (world_rank != 0) return results;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    for (size_t g = 0; g < e.groups.size(); ++g) {
      GroupCheck c;
      c.set = e.name;
      c.group = static_cast<int>(g);
      c.ranks = e.groups[g];
      c.alias_of = e.alias_of;
      c.backend = backend_name(backend_);
      c.ok = true;
      for (int r : e.groups[g]) {
        const CheckRow& row = all[static_cast<size_t>(r) * entries_.size() + i];
        if (row.group != static_cast<int>(g)) {
          c.ok = false;
          c.detail = "rank " + std::to_string(r) + " is in group " + std::to_string(row.group);
        } else if (!row.ok) {
          c.ok = false;
          c.detail = "rank " + std::to_string(r) + ": " + row.detail;
        }
        c.seconds = std::max(c.seconds, row.seconds);
      }
      results.push_back(std::move(c));
    }
  }
  return results;
}

}  // namespace ditrun::comm

// Multi-rank tests of every communicator operation on random data, run under mpirun with 2, 4 and 8 ranks:
//   mpirun -np 4 comm_test            (MPI, host memory)
//   mpirun -np 2 comm_test --nccl     (NCCL, device memory; one GPU per rank)
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "comm/communicators.h"
#include "comm/cuda_device.h"
#include "comm/error.h"
#include "comm/ulysses.h"
#include "partition/plan.h"

#ifdef DITRUN_WITH_CUDA
#include "comm/cuda_check.h"
#endif

using namespace ditrun;
using namespace ditrun::comm;

namespace {

Backend g_backend = Backend::mpi;
int g_rank = 0, g_size = 1;
std::vector<std::string> g_hosts;

// Deterministic pseudo-random value in [-1, 1) for (seed, index): splitmix64.
float random_value(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>((z >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

std::vector<float> random_vector(uint64_t seed, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = random_value(seed, i);
  return v;
}

// A buffer in the communicator's memory, filled from and read back to host vectors.
template <typename T>
class Buffer {
 public:
  explicit Buffer(size_t n) : n_(n) {
    if (g_backend == Backend::nccl) {
#ifdef DITRUN_WITH_CUDA
      DITRUN_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T) + 1));
#endif
    } else {
      host_.resize(n);
      p_ = host_.data();
    }
  }
  ~Buffer() {
#ifdef DITRUN_WITH_CUDA
    if (g_backend == Backend::nccl) cudaFree(p_);
#endif
  }
  void put(const std::vector<T>& v) {
#ifdef DITRUN_WITH_CUDA
    if (g_backend == Backend::nccl) {
      DITRUN_CUDA_CHECK(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
      return;
    }
#endif
    std::memcpy(p_, v.data(), v.size() * sizeof(T));
  }
  std::vector<T> get() const {
    std::vector<T> v(n_);
#ifdef DITRUN_WITH_CUDA
    if (g_backend == Backend::nccl) {
      DITRUN_CUDA_CHECK(cudaDeviceSynchronize());
      DITRUN_CUDA_CHECK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
      return v;
    }
#endif
    std::memcpy(v.data(), p_, n_ * sizeof(T));
    return v;
  }
  T* data() { return static_cast<T*>(p_); }

 private:
  size_t n_;
  void* p_ = nullptr;
  std::vector<T> host_;
};

// Communicators for a layout that fits the world: ulysses 2 (when even), ring 2 and cfg 2 as the size allows.
partition::LayoutRequest layout_for(int world) {
  partition::LayoutRequest r;
  if (world % 2 == 0) r.ulysses = 2;
  if (world % 4 == 0) r.ring = 2;
  if (world % 8 == 0) r.cfg = 2;
  return r;
}

class CommTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    plan_ = new partition::Plan(partition::make_plan(layout_for(g_size), partition::Topology(g_hosts)));
    std::vector<GroupSet> sets;
    for (auto kind : partition::kAllGroupKinds) {
      GroupSet s{partition::group_kind_name(kind), {}};
      for (const auto& g : plan_->groups(kind)) s.groups.push_back(g.ranks);
      sets.push_back(s);
    }
    comms_ = new Communicators(sets, g_backend);
  }
  static void TearDownTestSuite() {
    delete comms_;
    delete plan_;
  }
  // World ranks of this rank's group in set `name`, in group order.
  static const std::vector<int>& members_of(const std::string& name) {
    for (auto kind : partition::kAllGroupKinds)
      if (name == partition::group_kind_name(kind)) return plan_->groups(kind)[comms_->group_index(name)].ranks;
    throw std::runtime_error("no group kind " + name);
  }
  static partition::Plan* plan_;
  static Communicators* comms_;
};
partition::Plan* CommTest::plan_ = nullptr;
Communicators* CommTest::comms_ = nullptr;

// A seed per (test, world rank) so every rank can recompute any other rank's data.
uint64_t seed_of(int test, int world_rank) { return 1000ull * test + world_rank + 1; }

}  // namespace

TEST_F(CommTest, EveryGroupPassesItsCheck) {
  const auto checks = comms_->check();
  if (g_rank != 0) return;
  size_t groups = 0;
  for (auto kind : partition::kAllGroupKinds) groups += plan_->groups(kind).size();
  EXPECT_EQ(checks.size(), groups);
  for (const auto& c : checks) EXPECT_TRUE(c.ok) << c.set << "[" << c.group << "]: " << c.detail;
}

TEST_F(CommTest, AllReduceSumMaxMinOnEveryGroupKind) {
  for (const char* set : {"world", "ulysses", "ring", "cfg", "sp"}) {
    auto comm = comms_->get(set);
    ASSERT_TRUE(comm) << set;
    const auto& members = members_of(set);
    const size_t n = 1237;  // odd on purpose
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
      Buffer<float> send(n), recv(n);
      send.put(random_vector(seed_of(1, g_rank), n));
      comm->all_reduce(send.data(), recv.data(), n, DType::f32, op, Stream{});
      const auto got = recv.get();
      for (size_t i = 0; i < n; ++i) {
        float expect = op == ReduceOp::sum ? 0.f : random_value(seed_of(1, members[0]), i);
        for (int r : members) {
          const float v = random_value(seed_of(1, r), i);
          expect = op == ReduceOp::sum ? expect + v : op == ReduceOp::max ? std::max(expect, v) : std::min(expect, v);
        }
        ASSERT_NEAR(got[i], expect, 1e-5f) << set << " element " << i;
      }
    }
  }
}

TEST_F(CommTest, AllReduceInPlaceInt64AndDouble) {
  auto world = comms_->get("world");
  Buffer<int64_t> a(3);
  a.put({g_rank, 1, int64_t{1} << 40});
  world->all_reduce(a.data(), a.data(), 3, DType::i64, ReduceOp::sum, Stream{});
  const auto got = a.get();
  EXPECT_EQ(got[0], int64_t{g_size} * (g_size - 1) / 2);
  EXPECT_EQ(got[1], g_size);
  EXPECT_EQ(got[2], int64_t{g_size} << 40);
  Buffer<double> d(1);
  d.put({0.5 * g_rank});
  world->all_reduce(d.data(), d.data(), 1, DType::f64, ReduceOp::max, Stream{});
  EXPECT_DOUBLE_EQ(d.get()[0], 0.5 * (g_size - 1));
}

TEST_F(CommTest, AllGather) {
  auto comm = comms_->get("world");
  const size_t n = 999;
  Buffer<float> send(n), recv(n * g_size);
  send.put(random_vector(seed_of(2, g_rank), n));
  comm->all_gather(send.data(), recv.data(), n, DType::f32, Stream{});
  const auto got = recv.get();
  for (int r = 0; r < g_size; ++r)
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[r * n + i], random_value(seed_of(2, r), i)) << r << " " << i;
}

TEST_F(CommTest, AllToAll) {
  auto comm = comms_->get("world");
  const size_t n = 517;
  // Block p that rank r sends: seed (r, p).
  std::vector<float> mine(n * g_size);
  for (int p = 0; p < g_size; ++p)
    for (size_t i = 0; i < n; ++i) mine[p * n + i] = random_value(seed_of(3, g_rank * 64 + p), i);
  Buffer<float> send(n * g_size), recv(n * g_size);
  send.put(mine);
  comm->all_to_all(send.data(), recv.data(), n, DType::f32, Stream{});
  const auto got = recv.get();
  for (int q = 0; q < g_size; ++q)
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(got[q * n + i], random_value(seed_of(3, q * 64 + g_rank), i)) << "from " << q << " elem " << i;
}

TEST_F(CommTest, BroadcastFromTheLastRank) {
  auto comm = comms_->get("world");
  const size_t n = 333;
  Buffer<float> buf(n);
  buf.put(random_vector(seed_of(4, g_rank), n));
  comm->broadcast(buf.data(), n, DType::f32, g_size - 1, Stream{});
  EXPECT_EQ(buf.get(), random_vector(seed_of(4, g_size - 1), n));
}

TEST_F(CommTest, RingRotationPassesEveryBlockAround) {
  // The ring-attention pattern: each step sends the block in hand to the next rank and receives from the previous;
  // after size-1 steps every rank has seen every block, and the exchange overlaps host work.
  for (const char* set : {"world", "ring"}) {
    auto comm = comms_->get(set);
    const int n_ranks = comm->size();
    const int me = comm->rank();
    const size_t n = 2048 + 3;
    Buffer<float> hold(n), incoming(n);
    hold.put(random_vector(seed_of(5, me), n));
    for (int step = 1; step < n_ranks; ++step) {
      auto pending = comm->send_recv(hold.data(), (me + 1) % n_ranks, incoming.data(), (me - 1 + n_ranks) % n_ranks,
                                     n, DType::f32, Stream{});
      double busy = 0;  // stands for the attention block computed meanwhile
      for (int i = 0; i < 10000; ++i) busy += std::sqrt(static_cast<double>(i));
      EXPECT_GT(busy, 0);
      pending->wait(Stream{});
      const int origin = (me - step + n_ranks) % n_ranks;
      ASSERT_EQ(incoming.get(), random_vector(seed_of(5, origin), n)) << set << " step " << step;
      hold.put(incoming.get());
    }
  }
}

TEST_F(CommTest, UlyssesScatterHeadsGatherSequenceAndBack) {
  auto comm = comms_->get("ulysses");
  const int u = comm->size();
  const int me = comm->rank();
  const size_t tokens = 37, head_dim = 8, heads = 6 * static_cast<size_t>(u);
  // Global tensor x[t, h, d] over u × tokens tokens; rank me holds tokens [me·tokens, (me+1)·tokens).
  auto x = [&](size_t t, size_t h, size_t d) { return random_value(77, (t * heads + h) * head_dim + d); };
  std::vector<float> local(tokens * heads * head_dim);
  for (size_t t = 0; t < tokens; ++t)
    for (size_t h = 0; h < heads; ++h)
      for (size_t d = 0; d < head_dim; ++d) local[(t * heads + h) * head_dim + d] = x(me * tokens + t, h, d);
  const size_t count = local.size();
  Buffer<float> in(count), scratch(count), out(count), back(count);
  in.put(local);
  const UlyssesShape shape{tokens, heads, head_dim, DType::f32};
  scatter_heads_gather_sequence(*comm, shape, in.data(), scratch.data(), out.data(), Stream{});
  const auto gathered = out.get();
  const size_t local_heads = heads / u;
  for (size_t t = 0; t < tokens * u; ++t)
    for (size_t h = 0; h < local_heads; ++h)
      for (size_t d = 0; d < head_dim; ++d)
        ASSERT_EQ(gathered[(t * local_heads + h) * head_dim + d], x(t, me * local_heads + h, d)) << t << " " << h;
  gather_heads_scatter_sequence(*comm, shape, out.data(), scratch.data(), back.data(), Stream{});
  EXPECT_EQ(back.get(), local);
}

TEST_F(CommTest, UlyssesMovesBf16Payloads) {
  auto comm = comms_->get("ulysses");
  const size_t tokens = 5, heads = 2 * static_cast<size_t>(comm->size()), head_dim = 128;
  std::vector<uint16_t> local(tokens * heads * head_dim);
  for (size_t i = 0; i < local.size(); ++i) local[i] = static_cast<uint16_t>(i * 31 + comm->rank() * 7);
  Buffer<uint16_t> in(local.size()), scratch(local.size()), out(local.size()), back(local.size());
  in.put(local);
  const UlyssesShape shape{tokens, heads, head_dim, DType::bf16};
  scatter_heads_gather_sequence(*comm, shape, in.data(), scratch.data(), out.data(), Stream{});
  gather_heads_scatter_sequence(*comm, shape, out.data(), scratch.data(), back.data(), Stream{});
  EXPECT_EQ(back.get(), local);
}

TEST_F(CommTest, UlyssesPadsHeadsThatDoNotDivide) {
  // 12 heads over 8 ranks (Wan 1.3B): heads padded to 16, two per rank, the padding travels as zeros.
  auto comm = comms_->get("ulysses");
  const int u = comm->size(), me = comm->rank();
  const size_t tokens = 3, heads = static_cast<size_t>(u) + 1, head_dim = 4;
  const UlyssesShape shape{tokens, heads, head_dim, DType::f32};
  const size_t local_heads = shape.padded_heads(u) / u;
  auto x = [&](size_t t, size_t h, size_t d) { return random_value(91, (t * heads + h) * head_dim + d); };
  std::vector<float> local(tokens * heads * head_dim);
  for (size_t t = 0; t < tokens; ++t)
    for (size_t h = 0; h < heads; ++h)
      for (size_t d = 0; d < head_dim; ++d) local[(t * heads + h) * head_dim + d] = x(me * tokens + t, h, d);
  const size_t gathered_count = u * tokens * local_heads * head_dim;
  Buffer<float> in(local.size()), scratch(gathered_count), out(gathered_count), back(local.size());
  in.put(local);
  scatter_heads_gather_sequence(*comm, shape, in.data(), scratch.data(), out.data(), Stream{});
  const auto got = out.get();
  for (size_t t = 0; t < tokens * u; ++t)
    for (size_t h = 0; h < local_heads; ++h)
      for (size_t d = 0; d < head_dim; ++d) {
        const size_t global_head = me * local_heads + h;
        const float want = global_head < heads ? x(t, global_head, d) : 0.f;
        ASSERT_EQ(got[(t * local_heads + h) * head_dim + d], want) << t << " " << h;
      }
  gather_heads_scatter_sequence(*comm, shape, out.data(), scratch.data(), back.data(), Stream{});
  EXPECT_EQ(back.get(), local);
}

TEST_F(CommTest, Barrier) {
  for (const char* set : {"world", "ulysses", "dit"}) comms_->get(set)->barrier();
  SUCCEED();
}

// gtest on every rank; only rank 0 prints the usual output, other ranks print their failures.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", g_rank, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.summary());
  }
};

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--nccl") g_backend = Backend::nccl;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  std::vector<char> all(static_cast<size_t>(g_size) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, MPI_COMM_WORLD);
  for (int r = 0; r < g_size; ++r) g_hosts.emplace_back(all.data() + r * MPI_MAX_PROCESSOR_NAME);
  if (g_backend == Backend::nccl) {
    if (cuda_device_count() < 1) {
      if (g_rank == 0) std::printf("comm_test: skipped: no CUDA device on this machine\n");
      MPI_Finalize();
      return 0;
    }
    int local_rank = 0;
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &local_rank);
    MPI_Comm_free(&local);
    select_cuda_device(local_rank);
  }
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (g_rank != 0) delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new RankFailurePrinter);
  if (g_rank == 0)
    std::printf("comm_test: %d ranks, %s\n", g_size, g_backend == Backend::nccl ? "NCCL (device memory)" : "MPI");
  int failed = RUN_ALL_TESTS() != 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (g_rank == 0) std::printf("comm_test: %s on all %d ranks\n", any_failed ? "FAILED" : "passed", g_size);
  MPI_Finalize();
  return any_failed;
}

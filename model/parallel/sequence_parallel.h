// USP sequence parallelism (spec §7): each rank of the sequence-parallel group owns a contiguous token shard for
// the whole loop; self-attention gathers what it needs with a Ulysses all-to-all (scatter heads, gather sequence)
// inside the Ulysses group and rotates K/V blocks around the ring group, merging partial results by log-sum-exp.
// Heads the Ulysses degree does not divide are padded; tokens past the end are padding, masked as keys.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "model/core/backend.h"

namespace ditrun::parallel {

// What the attention moved (bytes sent by this rank, counted by the code) and how long that took: comm_ms is the
// time the exchanges ran (on the comm stream, measured with timing events), exposed_ms the time compute waited for
// them. Without overlap (or on the CPU, where MPI runs on the host) every exchange is exposed.
struct CommStats {
  double ulysses_bytes = 0;
  double ring_bytes = 0;
  double comm_ms = 0;
  double exposed_ms = 0;
  double hidden_share() const { return comm_ms > 0 ? 1.0 - exposed_ms / comm_ms : 0.0; }
  void reset() { *this = {}; }
};

// Which exchanges run on the backend's communication stream beside compute.
struct Overlap {
  // The ring exchange of the next K/V block while the current block computes.
  bool ring = true;
  // The Ulysses all-to-alls in two head groups: one group travels while the other's attention computes. Off by
  // default: on H200s over NVLink the NCCL kernels then hold SMs that compute needs and the step is slower
  // (bench/README.md, "Overlap").
  bool ulysses = false;
};

class SequenceParallel {
 public:
  // ulysses, ring: this rank's groups (size 1 when that axis is not split); total_tokens = F·H/2·W/2.
  SequenceParallel(comm::Comm& ulysses, comm::Comm& ring, int64_t total_tokens, Overlap overlap = {});

  int degree() const { return ulysses_.size() * ring_.size(); }
  int rank() const { return ring_.rank() * ulysses_.size() + ulysses_.rank(); }  // position in the sp group
  int64_t total_tokens() const { return total_; }
  int64_t shard_tokens() const { return shard_; }                 // padded: ceil(total / degree)
  int64_t first_token() const { return rank() * shard_; }
  const CommStats& stats() const { return stats_; }
  CommStats& stats() { return stats_; }
  const Overlap& overlap() const { return overlap_; }

  // Self-attention of this shard: q, k, v, out [shard, heads, head_dim] in the backend's compute dtype.
  void attention(Backend& be, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, float scale);

  // Adds the timed spans since the last call to stats() (waits for them to finish) and frees their marks: once per
  // step, after the step's work is queued.
  void settle_timing(Backend& be);

 private:
  // Attention of local queries over the ring's K/V chunks (each `chunk` tokens; chunk c starts at c·chunk).
  void ring_attention(Backend& be, const Tensor& q, Tensor& kv, Tensor& out, int64_t chunk, float scale);
  // A span of communication between two time marks; exposed when compute waited for all of it (same stream).
  void comm_span(int from, int to, bool exposed) {
    comm_spans_.push_back({from, to});
    if (exposed) exposed_spans_.push_back({from, to});
  }

  comm::Comm& ulysses_;
  comm::Comm& ring_;
  int64_t total_;
  int64_t shard_;
  Overlap overlap_;
  CommStats stats_;
  std::vector<std::pair<int, int>> comm_spans_, exposed_spans_;  // time marks, settled once per step
};

// The whole latent [C,F,H,W] from every rank's token shard (rows of Backend::patchify's token form, padding
// past the end of the grid dropped): an all-gather over the sp group, collective. In the scratch arena.
Tensor gather_latent(Backend& be, comm::Comm& sp_group, const Tensor& shard, const Shape& latent_shape);

// Tokens [first, first + rows) of a latent [C,F,H,W] in token form, zero rows past the end. In the scratch arena.
Tensor token_shard(Backend& be, const Tensor& latent, int64_t first, int64_t rows);

}  // namespace ditrun::parallel

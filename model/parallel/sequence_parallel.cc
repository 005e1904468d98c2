#include "model/parallel/sequence_parallel.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "comm/ulysses.h"

namespace ditrun::parallel {

namespace {

// Valid (non-padding) keys of the chunk that starts at token `first`.
int64_t valid_keys(int64_t total, int64_t first, int64_t chunk) {
  return std::clamp<int64_t>(total - first, 0, chunk);
}

}  // namespace

SequenceParallel::SequenceParallel(comm::Comm& ulysses, comm::Comm& ring, int64_t total_tokens, Overlap overlap)
    : ulysses_(ulysses), ring_(ring), total_(total_tokens), overlap_(overlap) {
  const int64_t p = degree();
  shard_ = (total_tokens + p - 1) / p;
}

void SequenceParallel::attention(Backend& be, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                                 float scale) {
  const int64_t heads = q.dim(1), d = q.dim(2);
  const int u = ulysses_.size();
  const Arena::Mark mark = be.arena().mark();
  if (u == 1) {
    // Ring only: K and V go around together; the DiT lays them out side by side, so no copy is needed then.
    Tensor kv;
    if (static_cast<const char*>(v.data()) == static_cast<const char*>(k.data()) + k.bytes()) {
      kv = Tensor(k.data(), k.dtype(), k.device(), {2, shard_, heads, d});
    } else {
      kv = be.scratch({2, shard_, heads, d}, be.compute_dtype());
      Tensor k0 = kv.slice(0, 1).view(k.shape()), v0 = kv.slice(1, 2).view(v.shape());
      be.copy(k0, k);
      be.copy(v0, v);
    }
    ring_attention(be, q, kv, out, shard_, scale);
    be.arena().rewind(mark);
    return;
  }
  // Ulysses: my tokens × all heads -> the group's tokens × my heads (padded heads are zeros). With Ulysses
  // overlap the heads go in two groups on the communication stream: group 1 travels while group 0's attention
  // computes, and group 0's output travels back while group 1's computes.
  comm::UlyssesShape shape{static_cast<size_t>(shard_), static_cast<size_t>(heads), static_cast<size_t>(d),
                           be.compute_dtype()};
  const int64_t local_heads = static_cast<int64_t>(shape.padded_heads(u)) / u, chunk = shard_ * u;
  // The CPU has no second stream (MPI completes on the host) but takes the same grouped path.
  const bool pipelined = overlap_.ulysses && local_heads % 2 == 0;
  const int groups = pipelined ? 2 : 1;
  const int64_t group_heads = local_heads / groups;
  const comm::Stream comm_stream{pipelined && be.comm_stream_handle() ? be.comm_stream_handle() : be.stream_handle()};
  struct Group {
    Tensor scratch, q, kv, out;
    int received = 0;
  };
  std::vector<Group> g(groups);
  be.comm_marks_reset();
  if (pipelined) be.comm_waits_for_compute();  // q, k, v are written
  // Timing: on the comm stream when there is one (the compute stream's waits are the exposed part), else on the
  // one order of work the exchanges share with compute (all exposed).
  const bool beside = pipelined && be.comm_stream_handle();
  const int sent = be.time_mark(beside);
  for (int i = 0; i < groups; ++i) {
    shape.group_first = static_cast<size_t>(i * group_heads);
    shape.group_count = static_cast<size_t>(group_heads);
    g[i].scratch = be.scratch({chunk, group_heads, d}, be.compute_dtype());
    g[i].q = be.scratch({chunk, group_heads, d}, be.compute_dtype());
    g[i].kv = be.scratch({2, chunk, group_heads, d}, be.compute_dtype());
    g[i].out = be.scratch({chunk, group_heads, d}, be.compute_dtype());
    comm::scatter_heads_gather_sequence(ulysses_, shape, q.data(), g[i].scratch.data(), g[i].q.data(), comm_stream);
    comm::scatter_heads_gather_sequence(ulysses_, shape, k.data(), g[i].scratch.data(), g[i].kv.slice(0, 1).data(),
                                        comm_stream);
    comm::scatter_heads_gather_sequence(ulysses_, shape, v.data(), g[i].scratch.data(), g[i].kv.slice(1, 2).data(),
                                        comm_stream);
    if (pipelined) g[i].received = be.comm_mark();
  }
  comm_span(sent, be.time_mark(beside), !beside);
  // The compute stream's wait for a comm mark, timed as exposed communication.
  const auto wait_for = [&](int comm_mark) {
    const int before = be.time_mark(false);
    be.compute_waits_for_comm(comm_mark);
    exposed_spans_.push_back({before, be.time_mark(false)});
  };
  for (int i = 0; i < groups; ++i) {
    if (beside) wait_for(g[i].received);
    else if (pipelined) be.compute_waits_for_comm(g[i].received);
    ring_attention(be, g[i].q, g[i].kv, g[i].out, chunk, scale);
    if (pipelined) be.comm_waits_for_compute();  // this group's output is ready to go back
    shape.group_first = static_cast<size_t>(i * group_heads);
    shape.group_count = static_cast<size_t>(group_heads);
    const int back = be.time_mark(beside);
    comm::gather_heads_scatter_sequence(ulysses_, shape, g[i].out.data(), g[i].scratch.data(), out.data(),
                                        comm_stream);
    comm_span(back, be.time_mark(beside), !beside);
  }
  if (beside) wait_for(be.comm_mark());  // out is complete before the block goes on
  else if (pipelined) be.compute_waits_for_comm(be.comm_mark());
  // Sent per all-to-all: every block but my own; four of them (q, k, v out, o back) per head group.
  stats_.ulysses_bytes += 4.0 * groups * static_cast<double>(g[0].scratch.bytes()) * (u - 1) / u;
  be.arena().rewind(mark);
}

void SequenceParallel::ring_attention(Backend& be, const Tensor& q, Tensor& kv, Tensor& out, int64_t chunk,
                                      float scale) {
  const int r = ring_.size(), me = ring_.rank();
  const int64_t rows = q.dim(0), heads = q.dim(1), d = q.dim(2);
  const Shape part_shape = {chunk, heads, d};
  if (r == 1) {
    Tensor k = kv.slice(0, 1).view(part_shape), v = kv.slice(1, 2).view(part_shape);
    be.attention(out, nullptr, q, k, v, valid_keys(total_, 0, chunk), scale);
    return;
  }
  // Accumulate in fp32; each step attends to the chunk in hand while the next one travels (spec §7).
  Tensor acc = be.scratch({rows, heads, d}, DType::f32), lse = be.scratch({heads, rows}, DType::f32);
  Tensor part = be.scratch({rows, heads, d}, be.compute_dtype()), part_lse = be.scratch({heads, rows}, DType::f32);
  Tensor incoming = be.scratch(kv.shape(), kv.dtype());
  Tensor* hold = &kv;
  Tensor* next = &incoming;
  const comm::Stream compute{be.stream_handle()};
  const bool beside = overlap_.ring && be.comm_stream_handle();  // the exchange runs on its own stream
  const comm::Stream comm_stream{beside ? be.comm_stream_handle() : be.stream_handle()};
  for (int step = 0; step < r; ++step) {
    std::unique_ptr<comm::Pending> pending;
    if (step + 1 < r) {
      be.comm_waits_for_compute();  // the block to send is written and the buffer to fill is no longer read
      const int sent = be.time_mark(beside);
      pending = ring_.send_recv(hold->data(), (me + 1) % r, next->data(), (me - 1 + r) % r,
                                static_cast<size_t>(hold->numel()), hold->dtype(), comm_stream);
      stats_.ring_bytes += static_cast<double>(hold->bytes());
      if (!overlap_.ring) pending->wait(compute);
      comm_span(sent, be.time_mark(beside), !beside);
    }
    const int holder = (me - step + r) % r;  // whose chunk is in hand
    Tensor k = hold->slice(0, 1).view(part_shape), v = hold->slice(1, 2).view(part_shape);
    const int64_t keys = valid_keys(total_, holder * chunk, chunk);
    if (step == 0) {
      be.attention(part, &lse, q, k, v, keys, scale);
      be.copy(acc, part);
    } else {
      be.attention(part, &part_lse, q, k, v, keys, scale);
      be.attention_merge(acc, lse, part, part_lse);
    }
    if (pending) {  // what compute waits here is exposed; on one stream (CPU: MPI on the host) it is comm too
      const int before = be.time_mark(false);
      pending->wait(compute);
      const int after = be.time_mark(false);
      if (beside) exposed_spans_.push_back({before, after});
      else comm_span(before, after, true);
    }
    std::swap(hold, next);
  }
  be.copy(out, acc);
}

void SequenceParallel::settle_timing(Backend& be) {
  for (const auto& [a, b] : comm_spans_) stats_.comm_ms += be.time_between(a, b);
  for (const auto& [a, b] : exposed_spans_) stats_.exposed_ms += be.time_between(a, b);
  comm_spans_.clear();
  exposed_spans_.clear();
  be.time_marks_reset();
}

Tensor gather_latent(Backend& be, comm::Comm& sp_group, const Tensor& shard, const Shape& latent_shape) {
  const int64_t tokens = latent_shape[1] * (latent_shape[2] / 2) * (latent_shape[3] / 2);
  Tensor all = shard;
  if (sp_group.size() > 1) {
    all = be.scratch({shard.dim(0) * sp_group.size(), shard.dim(1)}, DType::f32);
    sp_group.all_gather(shard.data(), all.data(), static_cast<size_t>(shard.numel()), DType::f32,
                        comm::Stream{be.stream_handle()});
  }
  Tensor latent = be.scratch(latent_shape, DType::f32);
  be.unpatchify(latent, all.slice(0, tokens));
  return latent;
}

Tensor token_shard(Backend& be, const Tensor& latent, int64_t first, int64_t rows) {
  const int64_t tokens = latent.dim(1) * (latent.dim(2) / 2) * (latent.dim(3) / 2), features = 4 * latent.dim(0);
  Tensor all = be.scratch({tokens, features}, DType::f32);
  be.patchify(all, latent);
  Tensor shard = be.scratch({rows, features}, DType::f32);
  const int64_t valid = std::clamp<int64_t>(tokens - first, 0, rows);
  if (valid < rows) {  // padding rows past the end of the grid are zeros
    const std::vector<float> zeros(static_cast<size_t>((rows - valid) * features), 0.f);
    Tensor pad = shard.slice(valid, rows);
    be.upload(pad, zeros.data());
  }
  if (valid > 0) {
    Tensor mine = shard.slice(0, valid);
    be.copy(mine, all.slice(first, first + valid));
  }
  return shard;
}

}  // namespace ditrun::parallel

// Ulysses sequence parallelism (DeepSpeed-Ulysses, spec §7): an all-to-all inside the Ulysses group turns a
// sequence shard with all heads into all tokens of the group with a slice of the heads, and back.
#pragma once
#include <cstddef>

#include "comm/comm.h"

namespace ditrun::comm {

// Shape of one rank's attention operand in the Ulysses group.
struct UlyssesShape {
  size_t tokens_per_rank;  // this rank's contiguous token shard (equal on every rank; pad the tail)
  size_t heads;            // the model's heads; need not divide by the group size (12 heads on 8 ranks)
  size_t head_dim;
  DType dtype;
  // Heads after padding to a multiple of the group size; padded heads travel as zeros and are dropped on return.
  size_t padded_heads(size_t ranks) const { return (heads + ranks - 1) / ranks * ranks; }
  // A head group, for pipelining: of the padded_heads/size heads each rank receives, move only
  // [group_first, group_first + group_count) (0 and 0: all of them).
  size_t group_first = 0;
  size_t group_count = 0;
};

// in  [tokens_per_rank, heads, head_dim] (my tokens, all heads)
// out [size × tokens_per_rank, padded_heads / size, head_dim] (every rank's tokens in rank order, my head slice;
//     with a head group: [size × tokens_per_rank, group_count, head_dim])
// scratch: as many elements as out, in the communicator's memory.
void scatter_heads_gather_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s);

// The inverse: in [size × tokens_per_rank, padded_heads / size, head_dim] -> out [tokens_per_rank, heads, head_dim]
// (padded heads dropped).
void gather_heads_scatter_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s);

}  // namespace ditrun::comm

// Ulysses sequence parallelism (DeepSpeed-Ulysses, spec §7): an all-to-all inside the Ulysses group turns a
// sequence shard with all heads into all tokens of the group with a slice of the heads, and back.
#pragma once
#include <cstddef>

#include "comm/comm.h"

namespace ditrun::comm {

// Shape of one rank's attention operand in the Ulysses group.
struct UlyssesShape {
  size_t tokens_per_rank;  // this rank's contiguous token shard (equal on every rank; pad the tail)
  size_t heads;            // all heads; must divide by the group size (pad heads to a multiple first)
  size_t head_dim;
  DType dtype;
};

// in  [tokens_per_rank, heads, head_dim] (my tokens, all heads)
// out [size × tokens_per_rank, heads / size, head_dim] (every rank's tokens in rank order, my head slice)
// scratch: a buffer of the same number of elements, in the communicator's memory.
void scatter_heads_gather_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s);

// The inverse: in [size × tokens_per_rank, heads / size, head_dim] -> out [tokens_per_rank, heads, head_dim].
void gather_heads_scatter_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s);

}  // namespace ditrun::comm

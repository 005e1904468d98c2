#include "comm/ulysses.h"

#include "comm/error.h"
#include "comm/strided_copy.h"

namespace ditrun::comm {

namespace {

size_t heads_per_rank(const Comm& comm, const UlyssesShape& shape) {
  const size_t n = static_cast<size_t>(comm.size());
  if (shape.heads % n != 0)
    throw CommError("Ulysses all-to-all: " + std::to_string(shape.heads) + " heads do not divide over " +
                    std::to_string(n) + " ranks of group " + comm.name() + " (pad the heads first)");
  return shape.heads / n;
}

}  // namespace

void scatter_heads_gather_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s) {
  const size_t local_heads = heads_per_rank(comm, shape);
  const size_t es = dtype_size(shape.dtype);
  const size_t slice = local_heads * shape.head_dim * es;  // bytes of one token's head slice
  const size_t block = shape.tokens_per_rank * slice;      // bytes sent to one peer
  // Pack: block p = my tokens × the heads of peer p, contiguous.
  for (int p = 0; p < comm.size(); ++p)
    copy_strided(comm.memory(), static_cast<char*>(scratch) + p * block, slice,
                 static_cast<const char*>(in) + p * slice, shape.heads * shape.head_dim * es, slice,
                 shape.tokens_per_rank, s);
  // Block q received = peer q's tokens × my heads: concatenated in rank order they are the token-major result.
  comm.all_to_all(scratch, out, block / es, shape.dtype, s);
}

void gather_heads_scatter_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s) {
  const size_t local_heads = heads_per_rank(comm, shape);
  const size_t es = dtype_size(shape.dtype);
  const size_t slice = local_heads * shape.head_dim * es;
  const size_t block = shape.tokens_per_rank * slice;
  // Block p of the input (peer p's tokens, my heads) goes back to peer p; block q received = my tokens × q's heads.
  comm.all_to_all(in, scratch, block / es, shape.dtype, s);
  for (int q = 0; q < comm.size(); ++q)
    copy_strided(comm.memory(), static_cast<char*>(out) + q * slice, shape.heads * shape.head_dim * es,
                 static_cast<const char*>(scratch) + q * block, slice, slice, shape.tokens_per_rank, s);
}

}  // namespace ditrun::comm

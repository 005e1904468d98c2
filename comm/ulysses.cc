#include "comm/ulysses.h"

#include <algorithm>

#include "comm/error.h"
#include "comm/strided_copy.h"

namespace ditrun::comm {

namespace {

// Bytes of the pieces: a token's head slice on one rank, the heads a rank owns (some may be padding).
struct Layout {
  size_t es, local_heads, moved_heads, first, slice, block, row;
};

Layout layout_of(const Comm& comm, const UlyssesShape& shape) {
  const size_t n = static_cast<size_t>(comm.size());
  Layout l;
  l.es = dtype_size(shape.dtype);
  l.local_heads = shape.padded_heads(n) / n;
  l.first = shape.group_first;
  l.moved_heads = shape.group_count ? shape.group_count : l.local_heads - l.first;
  if (l.first + l.moved_heads > l.local_heads)
    throw CommError("Ulysses head group [" + std::to_string(l.first) + ", +" + std::to_string(l.moved_heads) +
                    ") exceeds the " + std::to_string(l.local_heads) + " heads per rank");
  l.slice = l.moved_heads * shape.head_dim * l.es;  // one token's moved heads for one peer
  l.block = shape.tokens_per_rank * l.slice;        // one peer's share
  l.row = shape.heads * shape.head_dim * l.es;      // one token, all real heads
  return l;
}

// First global head peer p receives in this group, and how many of the group's heads are real (not padding).
size_t first_head_of(const Layout& l, int p) { return static_cast<size_t>(p) * l.local_heads + l.first; }
size_t real_heads_of(const UlyssesShape& shape, const Layout& l, int p) {
  const size_t first = first_head_of(l, p);
  return first >= shape.heads ? 0 : std::min(l.moved_heads, shape.heads - first);
}

}  // namespace

void scatter_heads_gather_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s) {
  const Layout l = layout_of(comm, shape);
  const size_t head_bytes = shape.head_dim * l.es;
  // Pack: block p = my tokens × the heads of peer p, contiguous; padded heads are zeros.
  for (int p = 0; p < comm.size(); ++p) {
    char* block = static_cast<char*>(scratch) + p * l.block;
    const size_t real = real_heads_of(shape, l, p);
    if (real > 0)
      copy_strided(comm.memory(), block, l.slice, static_cast<const char*>(in) + first_head_of(l, p) * head_bytes,
                   l.row, real * head_bytes, shape.tokens_per_rank, s);
    if (real < l.moved_heads)
      zero_strided(comm.memory(), block + real * head_bytes, l.slice, (l.moved_heads - real) * head_bytes,
                   shape.tokens_per_rank, s);
  }
  // Block q received = peer q's tokens × my heads: concatenated in rank order they are the token-major result.
  comm.all_to_all(scratch, out, l.block / l.es, shape.dtype, s);
}

void gather_heads_scatter_sequence(Comm& comm, const UlyssesShape& shape, const void* in, void* scratch, void* out,
                                   Stream s) {
  const Layout l = layout_of(comm, shape);
  const size_t head_bytes = shape.head_dim * l.es;
  // Block p of the input (peer p's tokens, my heads) goes back to peer p; block q received = my tokens × q's heads.
  comm.all_to_all(in, scratch, l.block / l.es, shape.dtype, s);
  for (int q = 0; q < comm.size(); ++q) {
    const size_t real = real_heads_of(shape, l, q);
    if (real > 0)
      copy_strided(comm.memory(), static_cast<char*>(out) + first_head_of(l, q) * head_bytes, l.row,
                   static_cast<const char*>(scratch) + q * l.block, l.slice, real * head_bytes,
                   shape.tokens_per_rank, s);
  }
}

}  // namespace ditrun::comm

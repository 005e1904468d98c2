// T5's bidirectional relative position buckets (spec §5.1), as the reference computes them (float32 logarithm,
// truncated): rel = key_pos − query_pos; b = (buckets/2)·[rel > 0]; r = |rel|; r < buckets/4 → b += r; else
// b += min(buckets/2 − 1, buckets/4 + trunc(ln(r/(buckets/4)) / ln(max_distance/(buckets/4)) · buckets/4)).
#pragma once
#include <cstdint>
#include <vector>

namespace ditrun::text {

int relative_position_bucket(int64_t rel, int buckets, int max_distance);

// The bucket of every key − query offset of an lq × lk attention, indexed by (j − i + lq − 1): what
// Backend::relative_position_bias takes.
std::vector<int32_t> bucket_of_offsets(int64_t lq, int64_t lk, int buckets, int max_distance);

}  // namespace ditrun::text

#include "model/text/relative_position.h"

#include <algorithm>
#include <cmath>

namespace ditrun::text {

int relative_position_bucket(int64_t rel, int buckets, int max_distance) {
  const int half = buckets / 2;
  int bucket = rel > 0 ? half : 0;
  const int64_t r = rel < 0 ? -rel : rel;
  const int max_exact = half / 2;
  if (r < max_exact) return bucket + static_cast<int>(r);
  // float32 throughout, like torch.log(rel.float() / max_exact) / math.log(...) * (half − max_exact) on a float
  // tensor: the truncation at exact powers depends on it.
  const float scaled = std::log(static_cast<float>(r) / static_cast<float>(max_exact)) /
                       static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact)) *
                       static_cast<float>(half - max_exact);
  const int large = max_exact + static_cast<int>(scaled);
  return bucket + std::min(large, half - 1);
}

std::vector<int32_t> bucket_of_offsets(int64_t lq, int64_t lk, int buckets, int max_distance) {
  std::vector<int32_t> out(static_cast<size_t>(std::max<int64_t>(lq + lk - 1, 0)));
  for (int64_t o = 0; o < static_cast<int64_t>(out.size()); ++o)
    out[static_cast<size_t>(o)] = relative_position_bucket(o - (lq - 1), buckets, max_distance);
  return out;
}

}  // namespace ditrun::text

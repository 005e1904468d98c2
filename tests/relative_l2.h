// ‖got − want‖ / ‖want‖ in double: the error measure of every numerical test (an all-zero reference gives the
// absolute error; a size mismatch, infinity).
#pragma once
#include <cmath>
#include <vector>

namespace ditrun::testing {

template <typename Want>
double relative_l2(const std::vector<float>& got, const std::vector<Want>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - static_cast<double>(want[i]);
    diff += d * d;
    norm += static_cast<double>(want[i]) * static_cast<double>(want[i]);
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace ditrun::testing

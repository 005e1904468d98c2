#include "model/core/backend.h"

#include <stdexcept>
#include <string>

namespace ditrun {

Tensor Backend::scratch(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(arena_->allocate(bytes), dtype, device(), shape);
}

int Backend::time_mark(bool /*on_comm_stream*/) {
  host_marks_.push_back(std::chrono::steady_clock::now());
  return static_cast<int>(host_marks_.size() - 1);
}

double Backend::time_between(int a, int b) {
  if (a < 0 || b < 0 || static_cast<size_t>(std::max(a, b)) >= host_marks_.size())
    throw std::out_of_range("time_between: mark " + std::to_string(std::max(a, b)) + " of " +
                            std::to_string(host_marks_.size()));
  return std::chrono::duration<double, std::milli>(host_marks_[b] - host_marks_[a]).count();
}

}  // namespace ditrun

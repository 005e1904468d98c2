#include "model/core/backend.h"

namespace ditrun {

Tensor Backend::scratch(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(arena_->allocate(bytes), dtype, device(), shape);
}

}  // namespace ditrun

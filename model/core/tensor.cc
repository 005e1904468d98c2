#include "model/core/tensor.h"

namespace ditrun {

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor Tensor::view(Shape shape) const {
  if (shape_numel(shape) != numel())
    throw std::invalid_argument("view " + shape_string(shape) + " of a tensor " + shape_string(shape_));
  return Tensor(data_, dtype_, device_, std::move(shape), owner_);
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  if (shape_.empty() || begin < 0 || end < begin || end > shape_[0])
    throw std::invalid_argument("slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                                shape_string(shape_));
  Shape s = shape_;
  s[0] = end - begin;
  const size_t row_bytes = shape_[0] == 0 ? 0 : bytes() / static_cast<size_t>(shape_[0]);
  return Tensor(static_cast<char*>(data_) + static_cast<size_t>(begin) * row_bytes, dtype_, device_, std::move(s),
                owner_);
}

void expect_shape(const Tensor& t, const Shape& shape, const char* what) {
  if (t.shape() != shape)
    throw std::invalid_argument(std::string(what) + " has shape " + shape_string(t.shape()) + ", expected " +
                                shape_string(shape));
}

}  // namespace ditrun

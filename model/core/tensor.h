// A contiguous row-major tensor: a typed view of memory on one device, owning it or not.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/core/dtype.h"

namespace ditrun {

enum class Device : uint8_t { cpu, cuda };

using Shape = std::vector<int64_t>;
std::string shape_string(const Shape& shape);  // "[16, 3, 6, 8]"
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // `owner` keeps the memory alive (heap tensors); arena tensors leave it empty.
  Tensor(void* data, DType dtype, Device device, Shape shape, std::shared_ptr<void> owner = {})
      : data_(data), dtype_(dtype), device_(device), shape_(std::move(shape)), owner_(std::move(owner)) {}

  bool defined() const { return data_ != nullptr || numel() == 0; }
  void* data() const { return data_; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Size of dimension i; negative i counts from the end.
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  // Rows of a [rows, cols] view: numel / last dim.
  int64_t rows() const { return shape_.empty() ? 1 : numel() / shape_.back(); }

  // Same memory, another shape of equal element count.
  Tensor view(Shape shape) const;
  // Elements [begin, end) of dimension 0, as a view.
  Tensor slice(int64_t begin, int64_t end) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  Shape shape_;
  std::shared_ptr<void> owner_;
};

// Throws std::invalid_argument naming `what` unless t has exactly `shape`.
void expect_shape(const Tensor& t, const Shape& shape, const char* what);

}  // namespace ditrun

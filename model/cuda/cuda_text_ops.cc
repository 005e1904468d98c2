// The text encoder ops of the CUDA backend (umT5, spec §5.1): argument checks, host ids to a stream-ordered device
// buffer, then the kernels of text_ops.cu. Same contracts as the CPU reference (model/core/backend.h).
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/cuda/cuda_backend.h"
#include "model/cuda/text_ops.h"

namespace ditrun {

namespace {

[[noreturn]] void invalid(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("cuda ") + op + ": " + what);
}

void require_float_on_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->device() != Device::cuda) invalid(op, "tensor " + shape_string(t->shape()) + " is not on the GPU");
    if (t->dtype() != DType::f32 && t->dtype() != DType::bf16)
      invalid(op, "expected f32 or bf16, got " + std::string(dtype_name(t->dtype())) + " " + shape_string(t->shape()));
  }
}

// Host int32 values in a device buffer freed in stream order after the kernels that read it.
class DeviceInts {
 public:
  DeviceInts(std::span<const int32_t> host, cudaStream_t stream) : stream_(stream) {
    const size_t bytes = host.size_bytes();
    if (bytes == 0) return;
    DITRUN_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&data_), bytes, stream_));
    // From pageable memory the copy is staged before the call returns, so `host` may go away afterwards.
    DITRUN_CUDA_CHECK(cudaMemcpyAsync(data_, host.data(), bytes, cudaMemcpyHostToDevice, stream_));
  }
  ~DeviceInts() {
    if (data_) cudaFreeAsync(data_, stream_);  // a failure here surfaces at the next checked call
  }
  DeviceInts(const DeviceInts&) = delete;
  DeviceInts& operator=(const DeviceInts&) = delete;
  const int32_t* get() const { return data_; }

 private:
  int32_t* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

void CudaBackend::embedding(Tensor& out, const Tensor& table, std::span<const int32_t> ids) {
  require_float_on_device("embedding", {&out, &table});
  if (table.rank() != 2 || out.numel() != static_cast<int64_t>(ids.size()) * table.dim(1))
    invalid("embedding", "table " + shape_string(table.shape()) + " out " + shape_string(out.shape()) + " for " +
                             std::to_string(ids.size()) + " ids");
  for (int32_t id : ids)  // checked on the host: a bad id on the device would read out of bounds
    if (id < 0 || id >= table.dim(0))
      invalid("embedding", "id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(table.dim(0)));
  const DeviceInts device_ids(ids, stream());
  cuda::embedding(out.data(), out.dtype(), table.data(), table.dtype(), device_ids.get(),
                  static_cast<int64_t>(ids.size()), table.dim(1), stream());
}

void CudaBackend::relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) {
  require_float_on_device("relative_position_bias", {&bias, &table});
  if (bias.dtype() != DType::f32 || table.dtype() != DType::f32) invalid("relative_position_bias", "expected f32");
  if (bias.rank() != 3 || table.rank() != 2 || table.dim(1) != bias.dim(0))
    invalid("relative_position_bias", "bias " + shape_string(bias.shape()) + " table " + shape_string(table.shape()));
  const int64_t h = bias.dim(0), lq = bias.dim(1), lk = bias.dim(2);
  if (static_cast<int64_t>(bucket_of_offset.size()) != lq + lk - 1)
    invalid("relative_position_bias", std::to_string(bucket_of_offset.size()) + " offsets for bias " +
                                          shape_string(bias.shape()));
  for (int32_t b : bucket_of_offset)
    if (b < 0 || b >= table.dim(0))
      invalid("relative_position_bias", "bucket " + std::to_string(b) + " outside the table");
  const DeviceInts buckets(bucket_of_offset, stream());
  cuda::relative_position_bias(bias.ptr<float>(), table.ptr<float>(), buckets.get(), h, lq, lk, stream());
}

void CudaBackend::attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                   int64_t kv_valid, float scale) {
  require_float_on_device("attention_biased", {&out, &q, &k, &v, &bias});
  if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3)
    invalid("attention_biased", "q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) + " v " +
                                    shape_string(v.shape()) + " must be [L, H, d]");
  const int64_t lq = q.dim(0), h = q.dim(1), d = q.dim(2), lk = k.dim(0);
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype() || k.dim(1) != h || v.dim(1) != h || k.dim(2) != d ||
      v.dim(2) != d || v.dim(0) != lk || out.numel() != q.numel() || bias.dtype() != DType::f32 ||
      bias.shape() != Shape{h, lq, lk})
    invalid("attention_biased", "q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) + " v " +
                                    shape_string(v.shape()) + " bias " + shape_string(bias.shape()) + " out " +
                                    shape_string(out.shape()));
  cuda::attention_biased(out.data(), out.dtype(), q.data(), k.data(), v.data(), q.dtype(), bias.ptr<float>(), lq, lk,
                         kv_valid, h, d, scale, stream());
}

void CudaBackend::multiply(Tensor& x, const Tensor& y) {
  require_float_on_device("multiply", {&x, &y});
  if (x.numel() != y.numel()) invalid("multiply", shape_string(x.shape()) + " vs " + shape_string(y.shape()));
  cuda::multiply(x.data(), x.dtype(), y.data(), y.dtype(), x.numel(), stream());
}

}  // namespace ditrun

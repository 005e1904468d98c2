// The text encoder ops of the CUDA backend (umT5, spec §5.1): argument checks, host ids to a stream-ordered device
// buffer, then the kernels of text_ops.cu. Same contracts as the CPU reference (model/core/backend.h).
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "comm/cuda_check.h"
#include "model/core/text_op_checks.h"
#include "model/cuda/cuda_backend.h"
#include "model/cuda/text_ops.h"

namespace ditrun {

namespace {

// On the GPU; the rest is model/core/text_op_checks.
void require_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->device() != Device::cuda)
      throw std::invalid_argument(std::string("cuda ") + op + ": tensor " + shape_string(t->shape()) +
                                  " is not on the GPU");
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
  require_device("embedding", {&out, &table});
  text_checks::embedding("cuda", out, table, ids);
  const DeviceInts device_ids(ids, stream());
  cuda::embedding(out.data(), out.dtype(), table.data(), table.dtype(), device_ids.get(),
                  static_cast<int64_t>(ids.size()), table.dim(1), stream());
}

void CudaBackend::relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) {
  require_device("relative_position_bias", {&bias, &table});
  text_checks::relative_position_bias("cuda", bias, table, bucket_of_offset);
  const int64_t h = bias.dim(0), lq = bias.dim(1), lk = bias.dim(2);
  const DeviceInts buckets(bucket_of_offset, stream());
  cuda::relative_position_bias(bias.ptr<float>(), table.ptr<float>(), buckets.get(), h, lq, lk, stream());
}

void CudaBackend::attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                   int64_t kv_valid, float scale) {
  require_device("attention_biased", {&out, &q, &k, &v, &bias});
  const auto [lq, lk, h, d] = text_checks::attention_biased("cuda", out, q, k, v, bias);
  cuda::attention_biased(out.data(), out.dtype(), q.data(), k.data(), v.data(), q.dtype(), bias.ptr<float>(), lq, lk,
                         kv_valid, h, d, scale, stream());
}

void CudaBackend::multiply(Tensor& x, const Tensor& y) {
  require_device("multiply", {&x, &y});
  text_checks::multiply("cuda", x, y);
  cuda::multiply(x.data(), x.dtype(), y.data(), y.dtype(), x.numel(), stream());
}

}  // namespace ditrun

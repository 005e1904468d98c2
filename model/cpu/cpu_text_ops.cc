// The text encoder ops of the CPU backend (umT5, spec §5.1): embedding lookup, T5's relative position bias,
// attention with an additive bias and a key mask, element-wise multiply. fp32 math; bf16 tables are widened.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/core/half.h"
#include "model/core/text_op_checks.h"
#include "model/cpu/cpu_backend.h"

namespace ditrun {

namespace {

float load(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f32 ? t.ptr<float>()[i] : bf16_to_f32(t.ptr<uint16_t>()[i]);
}

void store(Tensor& t, int64_t i, float v) {
  if (t.dtype() == DType::f32) t.ptr<float>()[i] = v;
  else t.ptr<uint16_t>()[i] = f32_to_bf16(v);
}

constexpr int64_t kParallelElements = int64_t{1} << 16;

}  // namespace

void CpuBackend::embedding(Tensor& out, const Tensor& table, std::span<const int32_t> ids) {
  text_checks::embedding("cpu", out, table, ids);
  const int64_t d = table.dim(1);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t src = ids[i] * d, dst = static_cast<int64_t>(i) * d;
    if (out.dtype() == table.dtype())
      std::memcpy(static_cast<char*>(out.data()) + dst * dtype_size(out.dtype()),
                  static_cast<const char*>(table.data()) + src * dtype_size(table.dtype()),
                  static_cast<size_t>(d) * dtype_size(out.dtype()));
    else
      for (int64_t c = 0; c < d; ++c) store(out, dst + c, load(table, src + c));
  }
}

void CpuBackend::relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) {
  text_checks::relative_position_bias("cpu", bias, table, bucket_of_offset);
  const int64_t h = bias.dim(0), lq = bias.dim(1), lk = bias.dim(2);
  const float* t = table.ptr<float>();
  float* o = bias.ptr<float>();
#pragma omp parallel for collapse(2) schedule(static) if (h * lq * lk > kParallelElements)
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t j = 0; j < lk; ++j) o[(hh * lq + i) * lk + j] = t[bucket_of_offset[j - i + lq - 1] * h + hh];
}

void CpuBackend::attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                  int64_t kv_valid, float scale) {
  const auto [lq, lk, h, d] = text_checks::attention_biased("cpu", out, q, k, v, bias);
  const int64_t keys = std::clamp<int64_t>(kv_valid, 0, lk);
  const float* b = bias.ptr<float>();
#pragma omp parallel if (lq * keys * h * d > kParallelElements * 16)
  {
    std::vector<float> p(static_cast<size_t>(keys));
    std::vector<double> acc(static_cast<size_t>(d));
#pragma omp for collapse(2) schedule(static)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = 0; i < lq; ++i) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          float s = 0;
          for (int64_t t = 0; t < d; ++t) s += load(q, (i * h + hh) * d + t) * load(k, (j * h + hh) * d + t);
          p[j] = s * scale + b[(hh * lq + i) * lk + j];
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < keys; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < keys; ++j)
          for (int64_t t = 0; t < d; ++t) acc[t] += static_cast<double>(p[j]) * load(v, (j * h + hh) * d + t);
        for (int64_t t = 0; t < d; ++t) store(out, (i * h + hh) * d + t, keys ? static_cast<float>(acc[t] / sum) : 0.f);
      }
  }
}

void CpuBackend::multiply(Tensor& x, const Tensor& y) {
  text_checks::multiply("cpu", x, y);
  const int64_t n = x.numel();
  if (x.dtype() == DType::f32 && y.dtype() == DType::f32) {
    float* a = x.ptr<float>();
    const float* c = y.ptr<float>();
#pragma omp parallel for schedule(static) if (n > kParallelElements)
    for (int64_t i = 0; i < n; ++i) a[i] *= c[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(x, i, load(x, i) * load(y, i));
}

}  // namespace ditrun

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
#include "model/cpu/cpu_backend.h"

namespace ditrun {

namespace {

[[noreturn]] void invalid(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("cpu ") + op + ": " + what);
}

void require_float(const char* op, const Tensor& t, const char* what) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::bf16)
    invalid(op, std::string(what) + " must be f32 or bf16, got " + std::string(dtype_name(t.dtype())));
}

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
  require_float("embedding", table, "table");
  require_float("embedding", out, "out");
  if (table.rank() != 2 || out.numel() != static_cast<int64_t>(ids.size()) * table.dim(1))
    invalid("embedding", "table " + shape_string(table.shape()) + " out " + shape_string(out.shape()) + " for " +
                             std::to_string(ids.size()) + " ids");
  const int64_t vocab = table.dim(0), d = table.dim(1);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      invalid("embedding", "id " + std::to_string(ids[i]) + " outside the vocabulary of " + std::to_string(vocab));
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
  if (bias.dtype() != DType::f32 || table.dtype() != DType::f32) invalid("relative_position_bias", "expected f32");
  if (bias.rank() != 3 || table.rank() != 2 || table.dim(1) != bias.dim(0))
    invalid("relative_position_bias", "bias " + shape_string(bias.shape()) + " table " + shape_string(table.shape()));
  const int64_t h = bias.dim(0), lq = bias.dim(1), lk = bias.dim(2), buckets = table.dim(0);
  if (static_cast<int64_t>(bucket_of_offset.size()) != lq + lk - 1)
    invalid("relative_position_bias", std::to_string(bucket_of_offset.size()) + " offsets for bias " +
                                          shape_string(bias.shape()));
  for (int32_t b : bucket_of_offset)
    if (b < 0 || b >= buckets) invalid("relative_position_bias", "bucket " + std::to_string(b) + " outside the table");
  const float* t = table.ptr<float>();
  float* o = bias.ptr<float>();
#pragma omp parallel for collapse(2) schedule(static) if (h * lq * lk > kParallelElements)
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t j = 0; j < lk; ++j) o[(hh * lq + i) * lk + j] = t[bucket_of_offset[j - i + lq - 1] * h + hh];
}

void CpuBackend::attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                  int64_t kv_valid, float scale) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &q, &k, &v})
    require_float("attention_biased", *t, "operand");
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
  require_float("multiply", x, "x");
  require_float("multiply", y, "y");
  if (x.numel() != y.numel()) invalid("multiply", shape_string(x.shape()) + " vs " + shape_string(y.shape()));
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

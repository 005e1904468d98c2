#include "model/core/text_op_checks.h"

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace ditrun::text_checks {

namespace {

[[noreturn]] void invalid(const char* backend, const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(backend) + " " + op + ": " + what);
}

void require_float(const char* backend, const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->dtype() != DType::f32 && t->dtype() != DType::bf16)
      invalid(backend, op,
              "expected f32 or bf16, got " + std::string(dtype_name(t->dtype())) + " " + shape_string(t->shape()));
}

}  // namespace

void embedding(const char* backend, const Tensor& out, const Tensor& table, std::span<const int32_t> ids) {
  require_float(backend, "embedding", {&out, &table});
  if (table.rank() != 2 || out.numel() != static_cast<int64_t>(ids.size()) * table.dim(1))
    invalid(backend, "embedding",
            "table " + shape_string(table.shape()) + " out " + shape_string(out.shape()) + " for " +
                std::to_string(ids.size()) + " ids");
  for (int32_t id : ids)
    if (id < 0 || id >= table.dim(0))
      invalid(backend, "embedding",
              "id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(table.dim(0)));
}

void relative_position_bias(const char* backend, const Tensor& bias, const Tensor& table,
                            std::span<const int32_t> bucket_of_offset) {
  if (bias.dtype() != DType::f32 || table.dtype() != DType::f32)
    invalid(backend, "relative_position_bias", "expected f32");
  if (bias.rank() != 3 || table.rank() != 2 || table.dim(1) != bias.dim(0))
    invalid(backend, "relative_position_bias",
            "bias " + shape_string(bias.shape()) + " table " + shape_string(table.shape()));
  if (static_cast<int64_t>(bucket_of_offset.size()) != bias.dim(1) + bias.dim(2) - 1)
    invalid(backend, "relative_position_bias",
            std::to_string(bucket_of_offset.size()) + " offsets for bias " + shape_string(bias.shape()));
  for (int32_t b : bucket_of_offset)
    if (b < 0 || b >= table.dim(0))
      invalid(backend, "relative_position_bias", "bucket " + std::to_string(b) + " outside the table");
}

AttentionSizes attention_biased(const char* backend, const Tensor& out, const Tensor& q, const Tensor& k,
                                const Tensor& v, const Tensor& bias) {
  require_float(backend, "attention_biased", {&out, &q, &k, &v});
  if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3)
    invalid(backend, "attention_biased",
            "q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) + " v " + shape_string(v.shape()) +
                " must be [L, H, d]");
  const AttentionSizes s{q.dim(0), k.dim(0), q.dim(1), q.dim(2)};
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype() || k.dim(1) != s.heads || v.dim(1) != s.heads ||
      k.dim(2) != s.d || v.dim(2) != s.d || v.dim(0) != s.lk || out.numel() != q.numel() ||
      bias.dtype() != DType::f32 || bias.shape() != Shape{s.heads, s.lq, s.lk})
    invalid(backend, "attention_biased",
            "q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) + " v " + shape_string(v.shape()) +
                " bias " + shape_string(bias.shape()) + " out " + shape_string(out.shape()));
  return s;
}

void multiply(const char* backend, const Tensor& x, const Tensor& y) {
  require_float(backend, "multiply", {&x, &y});
  if (x.numel() != y.numel())
    invalid(backend, "multiply", shape_string(x.shape()) + " vs " + shape_string(y.shape()));
}

}  // namespace ditrun::text_checks

// The argument checks of the text-encoder ops (model/core/backend.h, text encoder section), shared by every
// backend: storage dtypes, shapes, ids and buckets in range (checked on the host: a bad index on a device would
// read out of bounds). Each throws std::invalid_argument "<backend> <op>: <what>". A backend checks its own device.
#pragma once
#include <cstdint>
#include <span>

#include "model/core/tensor.h"

namespace ditrun::text_checks {

void embedding(const char* backend, const Tensor& out, const Tensor& table, std::span<const int32_t> ids);
void relative_position_bias(const char* backend, const Tensor& bias, const Tensor& table,
                            std::span<const int32_t> bucket_of_offset);
struct AttentionSizes {
  int64_t lq, lk, heads, d;
};
AttentionSizes attention_biased(const char* backend, const Tensor& out, const Tensor& q, const Tensor& k,
                                const Tensor& v, const Tensor& bias);
void multiply(const char* backend, const Tensor& x, const Tensor& y);

}  // namespace ditrun::text_checks

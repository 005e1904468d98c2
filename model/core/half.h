// Scalar conversions between fp32 and the 16-bit float formats stored in checkpoints (bf16, IEEE half).
#pragma once
#include <bit>
#include <cstdint>

namespace ditrun {

// bf16 is the top half of an fp32, so widening is exact.
constexpr float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Round to nearest, ties to even. NaN stays NaN (quieted, sign kept): plain rounding could turn a NaN whose
// payload sits in the low bits into infinity.
constexpr uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE binary16 → fp32, exact for every input (subnormals, ±inf, NaN payloads).
constexpr float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant · 2^-24 is exact in fp32
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// fp64 → bf16 with a single correct rounding. Going through fp32 with round-to-nearest would round twice
// (1 + 2^-8 + 2^-30 would land on the tie 1 + 2^-8 and then on 1.0); rounding to fp32 "to odd" first keeps
// the sticky information, and fp32 has enough extra bits for the second rounding to be exact.
inline uint16_t f64_to_bf16(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) != d && d == d) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    const double af = f < 0 ? -static_cast<double>(f) : static_cast<double>(f);
    const double ad = d < 0 ? -d : d;
    if (af > ad) u -= 1;  // the conversion rounded away from zero (possibly to inf): truncate instead
    f = std::bit_cast<float>(u | 1u);
  }
  return f32_to_bf16(f);
}

}  // namespace ditrun

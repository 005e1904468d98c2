#include "model/wan/positional.h"

#include <cmath>

namespace ditrun::wan {

std::vector<float> timestep_sinusoid(double t, int freq_dim) {
  const int half = freq_dim / 2;
  std::vector<float> out(freq_dim);
  for (int j = 0; j < half; ++j) {
    const double w = std::pow(10000.0, -static_cast<double>(j) / half);
    out[j] = static_cast<float>(std::cos(t * w));
    out[half + j] = static_cast<float>(std::sin(t * w));
  }
  return out;
}

RopeTable rope_table(int head_dim, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t first, int64_t count) {
  const int dh = 2 * (head_dim / 6), dw = dh, dt = head_dim - dh - dw;
  const int pt = dt / 2, ph = dh / 2, pw = dw / 2, pairs = head_dim / 2;
  std::vector<double> wt(pt), wh(ph), ww(pw);
  for (int j = 0; j < pt; ++j) wt[j] = std::pow(10000.0, -2.0 * j / dt);
  for (int j = 0; j < ph; ++j) wh[j] = std::pow(10000.0, -2.0 * j / dh);
  for (int j = 0; j < pw; ++j) ww[j] = std::pow(10000.0, -2.0 * j / dw);
  RopeTable table{std::vector<float>(count * pairs, 1.f), std::vector<float>(count * pairs, 0.f)};
  const int64_t tokens = grid_f * grid_h * grid_w;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t l = first + i;
    if (l >= tokens) continue;  // padding token: left unrotated
    const int64_t f = l / (grid_h * grid_w), h = (l / grid_w) % grid_h, w = l % grid_w;
    auto set = [&](int k, double angle) {
      table.cos[i * pairs + k] = static_cast<float>(std::cos(angle));
      table.sin[i * pairs + k] = static_cast<float>(std::sin(angle));
    };
    for (int k = 0; k < pt; ++k) set(k, f * wt[k]);
    for (int k = 0; k < ph; ++k) set(pt + k, h * wh[k]);
    for (int k = 0; k < pw; ++k) set(pt + ph + k, w * ww[k]);
  }
  return table;
}

}  // namespace ditrun::wan

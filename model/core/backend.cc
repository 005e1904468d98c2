#include "model/core/backend.h"

#include <stdexcept>
#include <string>

#include "model/core/video_op_checks.h"

namespace ditrun {

Tensor Backend::scratch(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(arena_->allocate(bytes), dtype, device(), shape);
}

void Backend::causal_conv3d(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma,
                            const Tensor& weight, const Tensor* bias, int pad_h, int pad_w, const Tensor* residual,
                            const Tensor* halo_rows) {
  video_checks::causal_conv3d(name().c_str(), out, history, x, gamma, weight, bias, pad_h, pad_w, residual,
                              halo_rows);
  const int64_t h = history ? history->dim(0) : 0, n = x.dim(0);
  const Arena::Scope scope(*arena_);
  if (halo_rows) {
    // Each frame between its two halo rows, then the norm over all of it (per pixel) and the convolution with no
    // H padding.
    const int64_t rows = x.dim(1), row = x.dim(2) * x.dim(3);
    Tensor in = scratch({h + n, rows + 2, x.dim(2), x.dim(3)}, DType::f32);
    const Tensor above = halo_rows->slice(0, 1).view({h + n, row}), below = halo_rows->slice(1, 2).view({h + n, row});
    for (int64_t f = 0; f < h + n; ++f) {
      Tensor frame = in.slice(f, f + 1).view({rows + 2, row});
      const Tensor source = f < h ? history->slice(f, f + 1) : x.slice(f - h, f - h + 1);
      Tensor top = frame.slice(0, 1), middle = frame.slice(1, rows + 1), bottom = frame.slice(rows + 1, rows + 2);
      copy(top, above.slice(f, f + 1));
      copy(middle, source.view({rows, row}));
      copy(bottom, below.slice(f, f + 1));
    }
    if (gamma) vae_rms_norm(in, in, *gamma, /*then_silu=*/true);
    conv3d(out, in, weight, bias, /*pad_h=*/0, pad_w);
    if (residual) add(out, *residual);
    return;
  }
  Tensor in = scratch({h + n, x.dim(1), x.dim(2), x.dim(3)}, DType::f32);
  if (h > 0) {
    Tensor head = in.slice(0, h);
    if (gamma)
      vae_rms_norm(head, *history, *gamma, /*then_silu=*/true);
    else
      copy(head, *history);
  }
  Tensor tail = in.slice(h, h + n);
  if (gamma)
    vae_rms_norm(tail, x, *gamma, /*then_silu=*/true);
  else
    copy(tail, x);
  conv3d(out, in, weight, bias, pad_h, pad_w);
  if (residual) add(out, *residual);
}

void Backend::require_norm_choice(const Tensor* weight, const Tensor* bias, const Tensor* shift,
                                  const Tensor* scale) {
  if ((shift == nullptr) != (scale == nullptr) || (shift && (weight || bias)))
    throw std::invalid_argument("add_layer_norm: give shift with scale, and not with weight or bias");
}

void Backend::add_layer_norm(Tensor& x, const Tensor& y, const Tensor* gate, Tensor& out, const Tensor* weight,
                             const Tensor* bias, const Tensor* shift, const Tensor* scale, float eps) {
  require_norm_choice(weight, bias, shift, scale);
  if (gate)
    add_gated(x, y, *gate);
  else
    add(x, y);
  if (shift)
    layer_norm_modulate(out, x, *shift, *scale, eps);
  else
    layer_norm(out, x, weight, bias, eps);
}

int Backend::time_mark(bool /*on_comm_stream*/) {
  host_marks_.push_back(std::chrono::steady_clock::now());
  return static_cast<int>(host_marks_.size() - 1);
}

double Backend::time_between(int a, int b) {
  if (a < 0 || b < 0 || static_cast<size_t>(std::max(a, b)) >= host_marks_.size())
    throw std::out_of_range("time_between: mark " + std::to_string(std::max(a, b)) + " of " +
                            std::to_string(host_marks_.size()));
  return std::chrono::duration<double, std::milli>(host_marks_[b] - host_marks_[a]).count();
}

}  // namespace ditrun

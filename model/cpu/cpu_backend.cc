#include "model/cpu/cpu_backend.h"

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "model/core/half.h"
#include "model/core/philox.h"

namespace ditrun {

namespace {

void require_f32(const Tensor& t, const char* op) {
  if (t.dtype() != DType::f32)
    throw std::invalid_argument(std::string("cpu ") + op + ": expected f32, got " + std::string(dtype_name(t.dtype())));
}

void require_same_numel(const Tensor& a, const Tensor& b, const char* op) {
  if (a.numel() != b.numel())
    throw std::invalid_argument(std::string("cpu ") + op + ": " + shape_string(a.shape()) + " vs " +
                                shape_string(b.shape()));
}

float gelu_tanh(float z) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * z * (1.f + std::tanh(kSqrt2OverPi * (z + 0.044715f * z * z * z)));
}

constexpr size_t kCpuArenaChunk = size_t{64} << 20;
// Element-wise loops smaller than this run on one thread: a parallel region costs more than it saves.
constexpr int64_t kParallelElements = int64_t{1} << 16;

}  // namespace

CpuBackend::CpuBackend() {
  arena_ = std::make_unique<Arena>([](size_t n) { return std::aligned_alloc(256, (n + 255) / 256 * 256); },
                                   [](void* p) { std::free(p); }, kCpuArenaChunk);
}

Tensor CpuBackend::allocate(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  std::shared_ptr<void> memory(std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256), std::free);
  if (!memory) throw std::bad_alloc();
  return Tensor(memory.get(), dtype, Device::cpu, shape, memory);
}

void CpuBackend::upload(Tensor& t, const float* host) {
  if (t.dtype() == DType::f32) {
    std::memcpy(t.data(), host, t.bytes());
  } else if (t.dtype() == DType::bf16) {
    auto* d = t.ptr<uint16_t>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = f32_to_bf16(host[i]);
  } else {
    throw std::invalid_argument("cpu upload: unsupported dtype " + std::string(dtype_name(t.dtype())));
  }
}

void CpuBackend::download(const Tensor& t, float* host) {
  if (t.dtype() == DType::f32) {
    std::memcpy(host, t.data(), t.bytes());
  } else if (t.dtype() == DType::bf16) {
    const auto* s = t.ptr<uint16_t>();
    for (int64_t i = 0; i < t.numel(); ++i) host[i] = bf16_to_f32(s[i]);
  } else {
    throw std::invalid_argument("cpu download: unsupported dtype " + std::string(dtype_name(t.dtype())));
  }
}

void CpuBackend::copy(Tensor& dst, const Tensor& src) {
  require_same_numel(dst, src, "copy");
  if (dst.dtype() == src.dtype()) {
    std::memmove(dst.data(), src.data(), src.bytes());
  } else if (src.dtype() == DType::f32) {
    upload(dst, src.ptr<float>());
  } else if (dst.dtype() == DType::f32) {
    download(src, dst.ptr<float>());
  } else {
    throw std::invalid_argument("cpu copy: unsupported conversion");
  }
}

void CpuBackend::linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue) {
  require_f32(out, "linear");
  require_f32(x, "linear");
  require_f32(w, "linear");
  const int64_t k = x.dim(-1), m = x.rows(), n = w.dim(0);
  if (w.numel() != n * k || out.rows() != m || out.dim(-1) != n || (bias && bias->numel() != n))
    throw std::invalid_argument("cpu linear: x " + shape_string(x.shape()) + " w " + shape_string(w.shape()) +
                                " out " + shape_string(out.shape()));
  cpu_gemm_xwt(out.ptr<float>(), x.ptr<float>(), w.ptr<float>(), bias ? bias->ptr<float>() : nullptr, m, n, k);
  if (epilogue == Epilogue::gelu_tanh) {
    float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) if (m * n > kParallelElements)
    for (int64_t i = 0; i < m * n; ++i) o[i] = gelu_tanh(o[i]);
  }
}

void CpuBackend::layer_norm(Tensor& out, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps) {
  require_f32(out, "layer_norm");
  require_f32(x, "layer_norm");
  require_same_numel(out, x, "layer_norm");
  const int64_t d = x.dim(-1), rows = x.rows();
  const float* xs = x.ptr<float>();
  float* o = out.ptr<float>();
  const float* g = weight ? weight->ptr<float>() : nullptr;
  const float* b = bias ? bias->ptr<float>() : nullptr;
#pragma omp parallel for schedule(static) if (rows * d > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xs + r * d;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += xr[i];
    mean /= d;
    for (int64_t i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
    for (int64_t i = 0; i < d; ++i) {
      float y = (xr[i] - static_cast<float>(mean)) * inv;
      if (g) y *= g[i];
      if (b) y += b[i];
      o[r * d + i] = y;
    }
  }
}

void CpuBackend::layer_norm_modulate(Tensor& out, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                     float eps) {
  layer_norm(out, x, nullptr, nullptr, eps);
  const int64_t d = x.dim(-1), rows = x.rows();
  float* o = out.ptr<float>();
  const float* sh = shift.ptr<float>();
  const float* sc = scale.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * d > kParallelElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < d; ++i) o[r * d + i] = o[r * d + i] * (1.f + sc[i]) + sh[i];
}

void CpuBackend::rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps) {
  require_f32(out, "rms_norm");
  require_f32(x, "rms_norm");
  const int64_t d = x.dim(-1), rows = x.rows();
  const float* xs = x.ptr<float>();
  const float* g = weight.ptr<float>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * d > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xs[r * d + i]) * xs[r * d + i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    for (int64_t i = 0; i < d; ++i) o[r * d + i] = xs[r * d + i] * inv * g[i];
  }
}

void CpuBackend::rope(Tensor& x, const Tensor& cos, const Tensor& sin) {
  require_f32(x, "rope");
  const int64_t l = x.dim(0), h = x.dim(1), d = x.dim(2), pairs = d / 2;
  const int64_t rows = std::min<int64_t>(l, cos.dim(0));
  float* xs = x.ptr<float>();
  const float* c = cos.ptr<float>();
  const float* s = sin.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * h * d > kParallelElements)
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t hh = 0; hh < h; ++hh) {
      float* v = xs + (t * h + hh) * d;
      for (int64_t k = 0; k < pairs; ++k) {
        const float x0 = v[2 * k], x1 = v[2 * k + 1];
        const float ck = c[t * pairs + k], sk = s[t * pairs + k];
        v[2 * k] = x0 * ck - x1 * sk;
        v[2 * k + 1] = x0 * sk + x1 * ck;
      }
    }
}

// The reference is the composition itself: the CUDA fused kernel is tested against it.
void CpuBackend::rms_norm_rope(Tensor& x, const Tensor& weight, float eps, const Tensor& cos, const Tensor& sin) {
  if (x.rank() != 3)
    throw std::invalid_argument("cpu rms_norm_rope: x " + shape_string(x.shape()) + " is not [L, H, d]");
  Tensor rows = x.view({x.dim(0), x.dim(1) * x.dim(2)});
  rms_norm(rows, rows, weight, eps);
  rope(x, cos, sin);
}

void CpuBackend::add_gated(Tensor& x, const Tensor& y, const Tensor& gate) {
  require_f32(x, "add_gated");
  require_f32(y, "add_gated");
  require_same_numel(x, y, "add_gated");
  const int64_t d = x.dim(-1), rows = x.rows();
  float* xs = x.ptr<float>();
  const float* ys = y.ptr<float>();
  const float* g = gate.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * d > kParallelElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < d; ++i) xs[r * d + i] += ys[r * d + i] * g[i];
}

void CpuBackend::add(Tensor& x, const Tensor& y) {
  require_f32(x, "add");
  require_f32(y, "add");
  require_same_numel(x, y, "add");
  float* xs = x.ptr<float>();
  const float* ys = y.ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) xs[i] += ys[i];
}

void CpuBackend::silu(Tensor& out, const Tensor& x) {
  require_f32(out, "silu");
  require_f32(x, "silu");
  require_same_numel(out, x, "silu");
  const float* xs = x.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) o[i] = xs[i] / (1.f + std::exp(-xs[i]));
}

void CpuBackend::fill_normal(Tensor& t, uint64_t seed, uint64_t stream, float mean, float std_dev) {
  require_f32(t, "fill_normal");
  float* o = t.ptr<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (int64_t{1} << 16))
  for (int64_t i = 0; i < n; ++i) o[i] = mean + std_dev * philox_normal(seed, stream, static_cast<uint64_t>(i));
}

void CpuBackend::lincomb(Tensor& out, std::span<const float> coeffs, std::span<const Tensor* const> inputs) {
  require_f32(out, "lincomb");
  if (coeffs.size() != inputs.size()) throw std::invalid_argument("cpu lincomb: coefficient count");
  for (const Tensor* t : inputs) {
    require_f32(*t, "lincomb");
    require_same_numel(out, *t, "lincomb");
  }
  float* o = out.ptr<float>();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n > kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    float s = 0;
    for (size_t j = 0; j < inputs.size(); ++j) s += coeffs[j] * inputs[j]->ptr<float>()[i];
    o[i] = s;
  }
}

void CpuBackend::attention(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           int64_t kv_valid, float scale) {
  require_f32(out, "attention");
  require_f32(q, "attention");
  require_f32(k, "attention");
  require_f32(v, "attention");
  const int64_t lq = q.dim(0), h = q.dim(1), d = q.dim(2), lk = k.dim(0);
  if (k.dim(1) != h || v.dim(1) != h || k.dim(2) != d || v.dim(2) != d || v.dim(0) != lk || out.numel() != q.numel())
    throw std::invalid_argument("cpu attention: q " + shape_string(q.shape()) + " k " + shape_string(k.shape()) +
                                " v " + shape_string(v.shape()));
  const int64_t keys = std::min(kv_valid, lk);
  const float* qs = q.ptr<float>();
  const float* ks = k.ptr<float>();
  const float* vs = v.ptr<float>();
  float* o = out.ptr<float>();
  float* l = lse ? lse->ptr<float>() : nullptr;
#pragma omp parallel if (lq * keys * h * d > kParallelElements * 16)
  {
    std::vector<float> p(static_cast<size_t>(keys));
    std::vector<double> acc(static_cast<size_t>(d));
#pragma omp for collapse(2) schedule(static)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = 0; i < lq; ++i) {
        const float* qi = qs + (i * h + hh) * d;
        float mx = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          const float* kj = ks + (j * h + hh) * d;
          float s = 0;
          for (int64_t t = 0; t < d; ++t) s += qi[t] * kj[t];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < keys; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < keys; ++j) {
          const float* vj = vs + (j * h + hh) * d;
          for (int64_t t = 0; t < d; ++t) acc[t] += static_cast<double>(p[j]) * vj[t];
        }
        float* oi = o + (i * h + hh) * d;
        for (int64_t t = 0; t < d; ++t) oi[t] = keys ? static_cast<float>(acc[t] / sum) : 0.f;
        if (l) l[hh * lq + i] = keys ? static_cast<float>(mx + std::log(sum)) : -INFINITY;
      }
  }
}

void CpuBackend::attention_merge(Tensor& out_acc, Tensor& lse_acc, const Tensor& out_part, const Tensor& lse_part) {
  require_f32(out_acc, "attention_merge");
  require_f32(out_part, "attention_merge");
  require_same_numel(out_acc, out_part, "attention_merge");
  const int64_t lq = out_acc.dim(0), h = out_acc.dim(1), d = out_acc.dim(2);
  float* acc = out_acc.ptr<float>();
  float* la = lse_acc.ptr<float>();
  const float* part = out_part.ptr<float>();
  const float* lp = lse_part.ptr<float>();
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < lq; ++i) {
      const float a = la[hh * lq + i], b = lp[hh * lq + i];
      if (b == -INFINITY) continue;
      const float m = std::max(a, b);
      const float l = m + std::log(std::exp(a - m) + std::exp(b - m));
      const float wa = std::exp(a - l), wb = std::exp(b - l);
      float* o = acc + (i * h + hh) * d;
      const float* p = part + (i * h + hh) * d;
      for (int64_t t = 0; t < d; ++t) o[t] = o[t] * wa + p[t] * wb;
      la[hh * lq + i] = l;
    }
}

void CpuBackend::patchify(Tensor& tokens, const Tensor& latent) {
  require_f32(latent, "patchify");
  require_f32(tokens, "patchify");
  const int64_t c = latent.dim(0), f = latent.dim(1), hh = latent.dim(2), ww = latent.dim(3);
  const int64_t hp = hh / 2, wp = ww / 2;
  expect_shape(tokens, {f * hp * wp, c * 4}, "patchify tokens");
  const float* x = latent.ptr<float>();
  float* t = tokens.ptr<float>();
  for (int64_t fi = 0; fi < f; ++fi)
    for (int64_t a = 0; a < hp; ++a)
      for (int64_t b = 0; b < wp; ++b) {
        float* row = t + ((fi * hp + a) * wp + b) * c * 4;
        for (int64_t ci = 0; ci < c; ++ci)
          for (int64_t kh = 0; kh < 2; ++kh)
            for (int64_t kw = 0; kw < 2; ++kw)
              row[(kh * 2 + kw) * c + ci] = x[((ci * f + fi) * hh + a * 2 + kh) * ww + b * 2 + kw];
      }
}

void CpuBackend::unpatchify(Tensor& latent, const Tensor& tokens) {
  require_f32(latent, "unpatchify");
  require_f32(tokens, "unpatchify");
  const int64_t c = latent.dim(0), f = latent.dim(1), hh = latent.dim(2), ww = latent.dim(3);
  const int64_t hp = hh / 2, wp = ww / 2;
  if (tokens.dim(-1) != 4 * c || tokens.rows() < f * hp * wp)
    throw std::invalid_argument("cpu unpatchify: tokens " + shape_string(tokens.shape()));
  const float* t = tokens.ptr<float>();
  float* x = latent.ptr<float>();
  for (int64_t fi = 0; fi < f; ++fi)
    for (int64_t a = 0; a < hp; ++a)
      for (int64_t b = 0; b < wp; ++b) {
        const float* row = t + ((fi * hp + a) * wp + b) * c * 4;
        for (int64_t q = 0; q < 2; ++q)
          for (int64_t r = 0; r < 2; ++r)
            for (int64_t ci = 0; ci < c; ++ci)
              x[((ci * f + fi) * hh + a * 2 + q) * ww + b * 2 + r] = row[(q * 2 + r) * c + ci];
      }
}

void set_cpu_threads(int threads) { omp_set_num_threads(threads < 1 ? 1 : threads); }
int cpu_threads() { return omp_get_max_threads(); }

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace ditrun

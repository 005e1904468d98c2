// The CPU backend: fp32 everywhere, plain loops with OpenMP. It is the reference every CUDA kernel is tested against
// and lets CI run the whole pipeline, multi-rank, without a GPU.
#pragma once
#include "model/core/backend.h"

namespace ditrun {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::f32; }

  Tensor allocate(const Shape& shape, DType dtype) override;
  void upload(Tensor& t, const float* host) override;
  void download(const Tensor& t, float* host) override;
  void copy(Tensor& dst, const Tensor& src) override;
  void synchronize() override {}

  void linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue) override;
  void layer_norm(Tensor& out, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps) override;
  void layer_norm_modulate(Tensor& out, const Tensor& x, const Tensor& shift, const Tensor& scale,
                           float eps) override;
  void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps) override;
  void rope(Tensor& x, const Tensor& cos, const Tensor& sin) override;
  void rms_norm_rope(Tensor& x, const Tensor& weight, float eps, const Tensor& cos, const Tensor& sin) override;
  void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) override;
  void add(Tensor& x, const Tensor& y) override;
  void silu(Tensor& out, const Tensor& x) override;
  void lincomb(Tensor& out, std::span<const float> coeffs, std::span<const Tensor* const> inputs) override;
  void attention(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v, int64_t kv_valid,
                 float scale) override;
  void attention_merge(Tensor& out_acc, Tensor& lse_acc, const Tensor& out_part, const Tensor& lse_part) override;
  void fill_normal(Tensor& t, uint64_t seed, uint64_t stream, float mean, float std_dev) override;
  void patchify(Tensor& tokens, const Tensor& latent) override;
  void unpatchify(Tensor& latent, const Tensor& tokens) override;

  // Video ops of the VAE (cpu_video_ops.cc).
  void conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h, int pad_w) override;
  void vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) override;
  void upsample_nearest2x(Tensor& out, const Tensor& in) override;
  void channels_to_frames(Tensor& out, const Tensor& in, int factor) override;
  void latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) override;
  void frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) override;

  // Text encoder ops of umT5 (cpu_text_ops.cc).
  void embedding(Tensor& out, const Tensor& table, std::span<const int32_t> ids) override;
  void relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) override;
  void attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                        int64_t kv_valid, float scale) override;
  void multiply(Tensor& x, const Tensor& y) override;
};

// Threads of the CPU ops (OpenMP). Ranks sharing a host should split its cores, not oversubscribe them.
void set_cpu_threads(int threads);
int cpu_threads();

// fp32 GEMM used by the CPU backend: out[M,N] = x[M,K]·w[N,K]ᵀ (+ bias), row-major.
void cpu_gemm_xwt(float* out, const float* x, const float* w, const float* bias, int64_t m, int64_t n, int64_t k);

}  // namespace ditrun

// The CUDA backend: bf16 storage for GEMM/attention operands and big weights, fp32 math, fp32 wherever the
// reference keeps fp32 (spec §1.8). Everything runs on one non-blocking stream owned by the backend, on the
// device that was current at construction; only upload/download wait for the host.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "model/core/backend.h"

namespace ditrun {

namespace cuda {
class Gemm;
class OpTiming;
struct GemmTuningStats;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda; }
  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  // All of this backend's work is ordered on this stream (communication streams synchronise with it).
  cudaStream_t stream() const { return stream_; }
  void* stream_handle() const override { return stream_; }
  void* comm_stream_handle() const override { return comm_stream_; }
  void comm_waits_for_compute() override;
  int comm_mark() override;
  void compute_waits_for_comm(int mark) override;
  void comm_marks_reset() override { marks_used_ = 0; }
  int time_mark(bool on_comm_stream) override;
  double time_between(int a, int b) override;
  void time_marks_reset() override { time_marks_used_ = 0; }
  void attention_merge(Tensor& out_acc, Tensor& lse_acc, const Tensor& out_part, const Tensor& lse_part) override;
  int device_index() const { return device_; }
  // How the GEMMs' cuBLASLt algorithms were chosen: measured, or loaded from the tuning file that was set when this
  // backend was made (cuda::gemm_tuning_file(); none = cuBLASLt's heuristic, all zero).
  const cuda::GemmTuningStats& gemm_tuning_stats() const;
  // GPU time per op and shape (model/cuda/op_timing.h): off until set_enabled(true); the DiT's ops are timed.
  cuda::OpTiming& op_timing() { return *op_timing_; }

  Tensor allocate(const Shape& shape, DType dtype) override;
  void upload(Tensor& t, const float* host) override;
  void download(const Tensor& t, float* host) override;
  void copy(Tensor& dst, const Tensor& src) override;
  void synchronize() override;
  void run_recorded(const std::string& key, const std::function<void()>& work) override;
  void forget_recorded(const std::string& key_prefix) override;
  RecordingStats recording_stats() const override;

  void linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue) override;
  void layer_norm(Tensor& out, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps) override;
  void layer_norm_modulate(Tensor& out, const Tensor& x, const Tensor& shift, const Tensor& scale,
                           float eps) override;
  void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps) override;
  void rope(Tensor& x, const Tensor& cos, const Tensor& sin) override;
  void rms_norm_rope(Tensor& x, const Tensor& weight, float eps, const Tensor& cos, const Tensor& sin) override;
  void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) override;
  void add(Tensor& x, const Tensor& y) override;
  void add_layer_norm(Tensor& x, const Tensor& y, const Tensor* gate, Tensor& out, const Tensor* weight,
                      const Tensor* bias, const Tensor* shift, const Tensor* scale, float eps) override;
  void silu(Tensor& out, const Tensor& x) override;
  void lincomb(Tensor& out, std::span<const float> coeffs, std::span<const Tensor* const> inputs) override;
  void attention(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v, int64_t kv_valid,
                 float scale) override;
  void fill_normal(Tensor& t, uint64_t seed, uint64_t stream, float mean, float std_dev) override;
  void patchify(Tensor& tokens, const Tensor& latent) override;
  void unpatchify(Tensor& latent, const Tensor& tokens) override;

  // Video ops of the VAE (cuda_video_ops.cc).
  void conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h, int pad_w) override;
  void causal_conv3d(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma, const Tensor& weight,
                     const Tensor* bias, int pad_h, int pad_w, const Tensor* residual = nullptr,
                     const Tensor* halo_rows = nullptr) override;
  void vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) override;
  void upsample_nearest2x(Tensor& out, const Tensor& in) override;
  void channels_to_frames(Tensor& out, const Tensor& in, int factor) override;
  void latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) override;
  void frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) override;

  // Text encoder ops of umT5 (cuda_text_ops.cc).
  void embedding(Tensor& out, const Tensor& table, std::span<const int32_t> ids) override;
  void relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) override;
  void attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                        int64_t kv_valid, float scale) override;
  void multiply(Tensor& x, const Tensor& y) override;

 private:
  // conv3d and causal_conv3d after their checks (cuda_video_ops.cc).
  void convolve(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma, const Tensor& weight,
                const Tensor* bias, int pad_h, int pad_w, const Tensor* residual, const Tensor* halo_rows);
  // f32 attention of one head by cuBLASLt GEMMs (keys ≥ 1 valid keys); see cuda_backend.cc.
  void attention_f32_by_gemm(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             int64_t keys, float scale);
  // Device f32 buffer for bf16 upload/download, at least `floats` long (capped: transfers go in pieces).
  float* staging(size_t floats);

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;  // communication that overlaps compute (ring exchanges)
  // run_recorded's graphs by key and scratch position; null = seen once, not yet recorded. DITRUN_CUDA_GRAPHS=0
  // turns recording off (every call runs its work directly).
  std::map<std::string, cudaGraphExec_t> graphs_;
  bool graphs_enabled_ = true;
  RecordingStats recording_stats_;
  cudaEvent_t compute_done_ = nullptr;
  std::vector<cudaEvent_t> comm_marks_;  // a pool, grown once to the most marks a step needs
  size_t marks_used_ = 0;
  std::vector<cudaEvent_t> time_marks_;  // timing events, a pool like comm_marks_
  size_t time_marks_used_ = 0;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::unique_ptr<cuda::OpTiming> op_timing_;
  float* staging_ = nullptr;
  size_t staging_floats_ = 0;
};

}  // namespace ditrun

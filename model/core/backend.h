// The op interface the model is written against, implemented twice: CPU (fp32 reference) and CUDA (bf16 storage,
// fp32 math). Tensors are contiguous; "rows" means all leading dimensions folded, "D" the last dimension.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/core/arena.h"
#include "model/core/tensor.h"

namespace ditrun {

enum class Epilogue { none, gelu_tanh };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  // Storage type of GEMM and attention operands and of big weights: f32 on CPU, bf16 on CUDA (spec §1.8).
  virtual DType compute_dtype() const = 0;

  // --- memory
  // A tensor that lives as long as the returned object (weights, caches).
  virtual Tensor allocate(const Shape& shape, DType dtype) = 0;
  // A tensor in the scratch arena, valid until the arena is rewound past it.
  Tensor scratch(const Shape& shape, DType dtype);
  Arena& arena() { return *arena_; }
  // Host fp32 data into t (converted to t's dtype), and back.
  virtual void upload(Tensor& t, const float* host) = 0;
  virtual void download(const Tensor& t, float* host) = 0;
  // dst = src, converting dtype (same element count).
  virtual void copy(Tensor& dst, const Tensor& src) = 0;
  virtual void synchronize() = 0;
  // The stream all of this backend's work is queued on (cudaStream_t), for communication that must follow it;
  // null on the CPU, where every op completes before it returns.
  virtual void* stream_handle() const { return nullptr; }
  // Recorded work (CUDA graphs on the GPU). `work` must only queue this backend's ops on its stream — no host reads
  // or uploads, no communication, no allocations but scratch — and queue the same ops every time it is called
  // under `key` (which must name everything that changes them: tensors' addresses, shapes). The first call under
  // a key (and scratch position) runs work() directly, warming caches and growing the arena; the second records
  // it and runs the recording; later calls replay the recording without calling work(). The default runs work().
  // A call made while a recording is being made (work calling run_recorded) runs its work into that recording.
  virtual void run_recorded(const std::string& /*key*/, const std::function<void()>& work) { work(); }
  // Drops the recordings whose key starts with key_prefix: their owner is freeing the tensors they use.
  virtual void forget_recorded(const std::string& /*key_prefix*/) {}
  // What run_recorded has done so far (all zero where nothing is recorded: the CPU, or recording turned off).
  struct RecordingStats {
    int64_t kept = 0;        // recordings held now
    int64_t recorded = 0;    // recordings made
    int64_t replayed = 0;    // calls answered by a replay
    int64_t nodes = 0;       // nodes (kernels, copies) in the recordings made
    double record_ms = 0;    // host time spent capturing and instantiating them
  };
  virtual RecordingStats recording_stats() const { return {}; }

  // --- dense
  // out[M,N] = x[M,K] · w[N,K]ᵀ + bias[N], then the epilogue. x and w share a dtype (f32 or bf16); out f32 or bf16.
  virtual void linear(Tensor& out, const Tensor& x, const Tensor& w, const Tensor* bias, Epilogue epilogue) = 0;

  // --- normalisation over the last dimension (statistics in fp32)
  // out = LN(x)·weight + bias (weight/bias optional, f32), eps inside the square root.
  virtual void layer_norm(Tensor& out, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps) = 0;
  // out = LN(x)·(1 + scale) + shift: the modulated norm of spec §1.4 (LN without affine; shift/scale f32 [D]).
  virtual void layer_norm_modulate(Tensor& out, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                   float eps) = 0;
  // out = x·rsqrt(mean(x²) + eps)·weight (weight f32 [D]); out may alias x.
  virtual void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps) = 0;

  // --- element-wise
  // Rotates interleaved pairs of x [L, H, d] in place: pair k of token l by angle θ[l,k] (cos/sin f32 [L, d/2]).
  virtual void rope(Tensor& x, const Tensor& cos, const Tensor& sin) = 0;
  // The self-attention q/k step of spec §1.5-1.6 in place on x [L, H, d]: rms_norm of each token's whole row of
  // H·d (weight f32 [H·d]), the result stored in x's dtype, then rope as above (tokens beyond the table are only
  // normalised). Equals rms_norm(x, x, ...) followed by rope(x, ...); CUDA fuses the two into one pass.
  virtual void rms_norm_rope(Tensor& x, const Tensor& weight, float eps, const Tensor& cos, const Tensor& sin) = 0;
  // x[rows, D] += y[rows, D] · gate[D] (x f32; y f32 or bf16; gate f32).
  virtual void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) = 0;
  // x += y (x f32).
  virtual void add(Tensor& x, const Tensor& y) = 0;
  // A residual step and the norm that reads it (spec §1.4 steps 2-4): x += y·gate (gate null: x += y), then out =
  // the layer norm of the new x, with weight/bias as layer_norm or with shift/scale as layer_norm_modulate (not
  // both; all optional f32 [D]). Equals those two calls; CUDA does both in one pass over x, the same bits.
  virtual void add_layer_norm(Tensor& x, const Tensor& y, const Tensor* gate, Tensor& out, const Tensor* weight,
                              const Tensor* bias, const Tensor* shift, const Tensor* scale, float eps);
  // out = x·sigmoid(x).
  virtual void silu(Tensor& out, const Tensor& x) = 0;
  // out = Σ coeffs[i]·inputs[i] (all f32, same element count; out may alias an input): the sampler updates.
  virtual void lincomb(Tensor& out, std::span<const float> coeffs, std::span<const Tensor* const> inputs) = 0;

  // t[i] = mean + std_dev·philox_normal(seed, stream, i) over t's elements (f32 or the compute dtype, rounded
  // once): seeded random weights made where they live, the same values on every backend.
  virtual void fill_normal(Tensor& t, uint64_t seed, uint64_t stream, float mean, float std_dev) = 0;

  // --- attention
  // Per head h: out[:,h,:] = softmax(scale·q kᵀ) v over keys [0, kv_valid); q [Lq,H,d], k,v [Lk,H,d].
  // lse (optional) [H, Lq] f32 = log Σ exp(scale·q·k): ring attention merges partial results with it.
  // CUDA: bf16 with d ∈ {32, 64, 128} (tensor cores, the DiT), or f32 with d ≤ 512 (the VAE's one head of width
  // C, spec §4.2).
  virtual void attention(Tensor& out, Tensor* lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         int64_t kv_valid, float scale) = 0;

  // Ring attention: merges a partial result into the accumulator. With l = log(exp(lse_acc) + exp(lse_part)):
  // out_acc = out_acc·exp(lse_acc − l) + out_part·exp(lse_part − l), lse_acc = l. out_acc f32 [Lq,H,d], lse f32
  // [H,Lq]; out_part in any dtype. A part with lse = −∞ (no valid key) changes nothing.
  virtual void attention_merge(Tensor& out_acc, Tensor& lse_acc, const Tensor& out_part, const Tensor& lse_part) = 0;

  // --- overlap of communication with compute (GPU; no-ops on the CPU, where communication is MPI on the host)
  // A second stream for communication that runs beside this backend's compute stream.
  virtual void* comm_stream_handle() const { return nullptr; }
  // The comm stream waits for everything queued on the compute stream so far (buffers ready to send or reuse).
  virtual void comm_waits_for_compute() {}
  // Marks the work queued on the comm stream so far; compute_waits_for_comm(mark) makes the compute stream wait
  // for it (data received). Marks are valid until the next comm_marks_reset().
  virtual int comm_mark() { return 0; }
  virtual void compute_waits_for_comm(int /*mark*/) {}
  virtual void comm_marks_reset() {}

  // --- timing of communication against compute (how much of it overlap hid)
  // A timestamp of where a stream has got to: the compute stream, or the comm stream (the CPU has one order of
  // work: the host clock, now). Valid until time_marks_reset().
  virtual int time_mark(bool on_comm_stream);
  // Milliseconds from mark a to mark b; waits until b has been reached.
  virtual double time_between(int a, int b);
  virtual void time_marks_reset() { host_marks_.clear(); }

  // --- layout (spec §1.2)
  // The latent in token form: one row per 2×2 patch (f, h, w), feature (kh·2 + kw)·C + c, which is the order of
  // the head's output columns (spec §1.2 step 8); the patch-embedding weight is permuted to match at load.
  // latent [C,F,H,W] f32 -> tokens [F·H/2·W/2, 4·C] in the dtype of `tokens`.
  virtual void patchify(Tensor& tokens, const Tensor& latent) = 0;
  // tokens [F·H/2·W/2, 4·C] -> latent [C,F,H,W] f32.
  virtual void unpatchify(Tensor& latent, const Tensor& tokens) = 0;

  // --- video (the Wan-VAE decoder, spec §4). Activations are channels-last, one video [T, H, W, C] contiguous,
  // so frames are dim-0 slices and 1×1 convolutions are `linear` over C. All f32.
  // A stride-1 3-D convolution, valid in time and zero-padded in space: in [Ti,Hi,Wi,Ci], weight [Co,kt,kh,kw,Ci]
  // (PyTorch's [Co,Ci,kt,kh,kw] permuted at load), bias [Co] (optional), out [Ti−kt+1, Hi+2·pad_h−kh+1,
  // Wi+2·pad_w−kw+1, Co]: out[t,y,x,o] = bias[o] + Σ w[o,a,b,c,i]·in[t+a, y+b−pad_h, x+c−pad_w, i]. Causal time
  // padding is the caller's: it prepends cached or zero frames (spec §4.4).
  virtual void conv3d(Tensor& out, const Tensor& in, const Tensor& weight, const Tensor* bias, int pad_h,
                      int pad_w) = 0;
  // The decoder's causal convolution as one op (spec §4.2, §4.4): the input is [history; x] along time (history
  // [h, H, W, C] the cached frames, null for none; x [n, H, W, C]), each pixel through SiLU(RMS_norm(·, gamma))
  // first when gamma [C] is given (the norm is per pixel, so a cache of raw frames normalised here equals the
  // reference's cache of normalised ones), then conv3d as above: out [h + n − kt + 1, ...]. The default composes
  // the other ops through a scratch copy; a backend may fuse it (CUDA builds the convolution's bf16 operand
  // straight from history and x). residual (optional, out's shape) is added to the result: a residual block's
  // shortcut (spec §4.2). halo_rows (optional, f32 [2, h + n, W, C], needs pad_h = 1) stand in for the zero
  // padding rows: row halo_rows[0][f] above frame f of [history; x] and halo_rows[1][f] below it, normalised like
  // the frame when gamma is given. A rank's band of rows convolves so with its neighbours' edge rows (issue 5's
  // row split) without first copying the band into a taller buffer.
  virtual void causal_conv3d(Tensor& out, const Tensor* history, const Tensor& x, const Tensor* gamma,
                             const Tensor& weight, const Tensor* bias, int pad_h, int pad_w,
                             const Tensor* residual = nullptr, const Tensor* halo_rows = nullptr);
  // The VAE's RMS_norm over the last dim (spec §4.2): y = x / max(‖x‖₂, 1e-12)·sqrt(D)·gamma[D] (no eps inside a
  // root, unlike rms_norm), then y·sigmoid(y) when `then_silu` (every VAE norm but the attention's is followed by
  // SiLU). out may alias x.
  virtual void vae_rms_norm(Tensor& out, const Tensor& x, const Tensor& gamma, bool then_silu) = 0;
  // Nearest ×2 in H and W ('nearest-exact' at scale 2): in [T,H,W,C] -> out [T,2H,2W,C].
  virtual void upsample_nearest2x(Tensor& out, const Tensor& in) = 0;
  // Channel groups become frames (upsample3d's time interleave, spec §4.2): in [T,H,W,f·C] -> out [f·T,H,W,C],
  // out[f·t + s, y, x, c] = in[t, y, x, s·C + c].
  virtual void channels_to_frames(Tensor& out, const Tensor& in, int factor) = 0;
  // A channels-first latent to channels-last, with a per-channel affine (the VAE's de-normalisation z·std + mean,
  // spec §4.1): in [C,T,H,W] -> out [T,H,W,C], out[t,y,x,c] = in[c,t,y,x]·scale[c] + shift[c] (f32 [C]).
  virtual void latent_to_channels_last(Tensor& out, const Tensor& in, const Tensor& scale, const Tensor& shift) = 0;
  // Channels-last frames to planar frames, clamped (the decoder's output, spec §4.4; the video sinks take
  // [3][H][W]): in [T,H,W,C] -> out [T,C,H,W], out[t,c,y,x] = clamp(in[t,y,x,c], lo, hi).
  virtual void frames_to_planar(Tensor& out, const Tensor& in, float lo, float hi) = 0;

  // --- text encoder (umT5, spec §5.1; CPU: cpu_text_ops.cc, CUDA: cuda_text_ops.cc)
  // out[i, :] = table[ids[i], :]: the token embedding lookup. table [V, D] (f32 or bf16), out [n, D] (f32 or bf16);
  // ids on the host, n of them, each in [0, V).
  virtual void embedding(Tensor& out, const Tensor& table, std::span<const int32_t> ids) = 0;
  // T5's relative position bias: bias[h, i, j] = table[bucket_of_offset[j − i + Lq − 1], h]. table f32 [buckets, H],
  // bias f32 [H, Lq, Lk]; bucket_of_offset on the host, Lq + Lk − 1 entries (key − query offsets −(Lq−1) .. Lk−1).
  virtual void relative_position_bias(Tensor& bias, const Tensor& table, std::span<const int32_t> bucket_of_offset) = 0;
  // Per head h: out[:,h,:] = softmax(scale·q kᵀ + bias[h]) v over keys [0, kv_valid) (the key mask of a prompt
  // padded at the end). q [Lq,H,d], k,v [Lk,H,d] of one dtype (f32 or bf16), bias f32 [H, Lq, Lk], out [Lq,H,d]
  // f32 or q's dtype; softmax in fp32. umT5 uses scale 1 (no 1/√d, spec §5.1). A row with no valid key is 0.
  virtual void attention_biased(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                int64_t kv_valid, float scale) = 0;
  // x *= y element-wise (same element count; each f32 or bf16, math in fp32): GELU(gate)·linear of the gated FFN.
  virtual void multiply(Tensor& x, const Tensor& y) = 0;

 protected:
  // add_layer_norm's choice of norm: shift goes with scale, and neither with weight or bias (invalid_argument).
  static void require_norm_choice(const Tensor* weight, const Tensor* bias, const Tensor* shift,
                                  const Tensor* scale);

  std::unique_ptr<Arena> arena_;

 private:
  std::vector<std::chrono::steady_clock::time_point> host_marks_;
};

std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend on the current device; throws when this build has no CUDA.
std::unique_ptr<Backend> make_cuda_backend();
bool cuda_backend_built();

}  // namespace ditrun

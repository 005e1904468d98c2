// The Wan-VAE's convolutions on tensor cores (spec §4: the 3×3×3 convolutions are ≈275 TFLOP of a 480p decode):
// an implicit GEMM over a zero-padded bf16 copy of the input, fp32 accumulation, f32 output with the bias.
//
// Why it needs no im2col: in the padded channels-last volume [Ti, Hp, Wp, Cp] (Hp = Hi + 2·pad_h, Wp = Wi +
// 2·pad_w), output (t, y, x) sits at flat pixel p = (t·Hp + y)·Wp + x, and its input for tap (a, b, c) at
// p + (a·Hp + b)·Wp + c. So for every tap the GEMM's A operand is the same contiguous [pixels, Cp] matrix shifted
// by a constant number of rows: the kernel is a plain GEMM main loop whose A pointer moves per tap. Flat
// positions with y ≥ Ho or x ≥ Wo (the wrap-around of the padding) are computed and dropped: 0.7% of the work at
// 832×480, 5% at the latent's 104×60.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ditrun::cuda {

// What the padded operands need: channels padded to kConvChannelStep, output channels to the tile width.
constexpr int64_t kConvChannelStep = 32;
int64_t conv_padded_in_channels(int64_t ci);
int64_t conv_padded_out_channels(int64_t co);

// [history; x] along time (f32 [history_frames, hi, wi, ci] and [frames, hi, wi, ci]; history may be null with
// 0 frames) -> padded bf16 [history_frames + frames, hi + 2·pad_h, wi + 2·pad_w, cp]: each pixel through
// SiLU(RMS_norm(·, gamma)) when gamma [ci] is given (Backend::causal_conv3d), zeros in the border and in
// channels ≥ ci. halo_rows (optional, f32 [2, history_frames + frames, wi, ci], with pad_h 1) fill the padding rows
// above (halo_rows[0][t]) and below (halo_rows[1][t]) each frame t instead of zeros.
void conv_pack_input(void* padded, const float* history, int64_t history_frames, const float* x, int64_t frames,
                     const float* gamma, const float* halo_rows, int64_t hi, int64_t wi, int64_t ci, int64_t cp,
                     int64_t pad_h, int64_t pad_w, cudaStream_t stream);
// weight f32 [co, taps, ci] -> bf16 [cop, taps, cp], zeros in the padding.
void conv_pack_weight(void* packed, const float* weight, int64_t co, int64_t taps, int64_t ci, int64_t cop,
                      int64_t cp, cudaStream_t stream);
// out f32 [ti − kt + 1, hp − kh + 1, wp − kw + 1, co] = bias + Σ_taps packed_in(shifted) · packed_weightᵀ,
// from the operands above (hp, wp: the padded sizes). Kernel width kw 1 or 3 (the Wan-VAE has no other).
// residual (optional, out's layout) is added in the epilogue. workspace: conv3d_igemm_workspace_floats(...) f32
// values, or null; with it a problem whose tiles fill the GPU badly (the latent-resolution convolutions) splits its
// tap rows over more CTAs and adds their partial sums up afterwards, in a fixed order.
void conv3d_igemm(float* out, const void* padded, const void* packed_weight, const float* bias,
                  const float* residual, int64_t ti, int64_t hp, int64_t wp, int64_t cp, int64_t co, int64_t cop,
                  int64_t kt, int64_t kh, int64_t kw, float* workspace, cudaStream_t stream);
// The workspace conv3d_igemm uses for this problem on the current device (0: it does not split).
int64_t conv3d_igemm_workspace_floats(int64_t ti, int64_t hp, int64_t wp, int64_t cp, int64_t co, int64_t kt,
                                      int64_t kh, int64_t kw);

}  // namespace ditrun::cuda

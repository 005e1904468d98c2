// The Wan2.1 DiT forward (spec §1.2-1.8), written once against the op interface: CPU fp32 reference and CUDA
// bf16 with fp32 residual stream, modulation, norms and head.
#pragma once
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/core/backend.h"
#include "model/parallel/sequence_parallel.h"
#include "model/wan/dit_config.h"
#include "model/wan/dit_weights.h"

namespace ditrun::wan {

// What depends only on the text: the embedded context and every block's cross-attention K and V. Computed once
// per prompt and reused by every step.
struct ContextCache {
  Tensor embedded;            // [text_len, D]
  std::vector<Tensor> k, v;   // per block [text_len, heads, head_dim]
};

// The addresses of all of a cache's tensors in one number, for Backend::run_recorded keys: a new prompt's cache
// may reuse one address but not all.
uint64_t context_address_hash(const ContextCache& context);

// The timestep conditioning of one step: e (for the head) and e0 (the six modulation rows of every block).
struct TimeEmbedding {
  Tensor e;   // [1, D] f32
  Tensor e0;  // [6, D] f32
};

// The self-attention operands of a block for some tokens: normed, rotated q and k, and v; v follows k in memory.
struct AttentionInputs {
  Tensor q, k, v;  // [rows, heads, head_dim]
};

class DiT {
 public:
  DiT(Backend& backend, DitConfig config, DitWeights weights);

  const DitConfig& config() const { return config_; }
  Backend& backend() { return backend_; }

  // context: [rows ≤ text_len, text_dim] f32 on the host (an umT5 output cut to its real length); zero-padded to
  // text_len rows (spec §1.2 step 5).
  ContextCache encode_context(const std::vector<float>& context, int64_t rows);
  // The same into `cache`, reusing its tensors when it has them: a loop that keeps its context caches from one
  // prompt to the next keeps their addresses, which its recorded steps read.
  void encode_context_into(ContextCache& cache, const std::vector<float>& context, int64_t rows);

  // v = DiT(x, t, context): x and v [C, F, H, W] f32 tensors on the backend.
  void forward(Tensor& v, const Tensor& x, double timestep, const ContextCache& context);

  // The same on the latent in token form (Backend::patchify): x and v [rows, 4·C] f32 for tokens
  // [first, first + rows) of a grid of (frames, rows, cols) patches. With sp, this rank's shard (rows =
  // sp->shard_tokens(), padding rows past the end of the grid); without, all tokens.
  struct Grid {
    int64_t frames, rows, cols;
    int64_t tokens() const { return frames * rows * cols; }
  };
  void forward_tokens(Tensor& v, const Tensor& x, const Grid& grid, double timestep, const ContextCache& context,
                      parallel::SequenceParallel* sp);

  // forward_tokens in two parts, so that a caller can record several forwards and its own device work as one
  // region (Backend::run_recorded: a whole denoising step). prepare_forward is the host's part: the timestep's
  // sinusoid uploaded to the device, the RoPE tables of this rank's tokens made on first use. forward_prepared
  // queues device work only (and sp's communication): without sp and without a block observer it may be recorded.
  // It reads the timestep of the latest prepare_forward, so forwards at one timestep share one prepare.
  struct PreparedForward {
    Grid grid;
    int64_t first, rows;      // this rank's tokens
    Tensor rope_cos, rope_sin;  // [rows, head_dim/2]; they live as long as the model
  };
  PreparedForward prepare_forward(double timestep, const Grid& grid, const parallel::SequenceParallel* sp);
  void forward_prepared(Tensor& v, const Tensor& x, const PreparedForward& prepared, const ContextCache& context,
                        parallel::SequenceParallel* sp);
  // A forward with a block observer calls back to the host between blocks: it cannot be recorded.
  bool observed() const { return static_cast<bool>(observer_); }
  // Names this model in Backend::run_recorded keys; unique in the process (an address could be reused).
  uint64_t id() const { return id_; }
  // Drops forward_tokens' recordings that write `v` (its owner is about to free it).
  void forget_recorded_forwards(const Tensor& v);

  // The pieces of a forward, for callers that split the tokens (sequence parallel) or check a slice. Tensors
  // come from the scratch arena: valid until the caller's arena mark is rewound.
  TimeEmbedding time_embedding(double timestep);
  // modulation + e0: the block's six [D] rows (shift, scale, gate for attention; shift, scale, gate for the FFN).
  Tensor block_modulation(int index, const TimeEmbedding& time);
  void block_modulation(Tensor& m, int index, const TimeEmbedding& time);  // into m [6, D] f32
  // q, k, v of `h` rows (residual stream, f32) whose RoPE angles are rope_cos/rope_sin [rows, head_dim/2].
  // `normed`, if given, is the block's modulated norm of h already made (by the previous finish_block).
  AttentionInputs attention_inputs(int index, const Tensor& h, const Tensor& m, const Tensor& rope_cos,
                                   const Tensor& rope_sin, const Tensor* normed = nullptr);
  // The rest of block `index` for the rows of h, given their self-attention output attn [rows, heads, head_dim]:
  // output projection and gated residual, cross-attention, FFN. With next_m (the next block's modulation), the
  // last residual step also writes the next block's modulated norm into next_normed [rows, D] (compute dtype) in
  // the same pass over h.
  void finish_block(int index, Tensor& h, const Tensor& m, const Tensor& attn, const ContextCache& context,
                    const Tensor* next_m = nullptr, Tensor* next_normed = nullptr);
  // out = the modulated norm of h that block attention starts from (spec §1.4 step 1; m = block_modulation).
  void attention_norm(Tensor& out, const Tensor& h, const Tensor& m);
  // Head: tokens [rows, C·4] f32 of the residual rows h.
  void head(Tensor& tokens, const Tensor& h, const TimeEmbedding& time);

  // Called with the residual stream before each block (index 0..layers-1) and after the last (index = layers).
  using BlockObserver = std::function<void(int index, const Tensor& h)>;
  void set_block_observer(BlockObserver observer) { observer_ = std::move(observer); }

 private:

  // RoPE angles of the whole token grid, per grid size: made once, reused by every step.
  struct RopeAngles {
    Tensor cos, sin;
  };
  const RopeAngles& rope_angles(const Grid& grid, int64_t first, int64_t count);
  // The timestep's sinusoid into timestep_input_ (host to device, outside any recording), and the embedding of
  // what timestep_input_ holds (device work only).
  void set_timestep(double timestep);
  TimeEmbedding time_embedding_of_input();
  // The start of forward_tokens' run_recorded keys for output v.
  std::string recording_key_of_output(const Tensor& v) const;

  Backend& backend_;
  DitConfig config_;
  DitWeights w_;
  BlockObserver observer_;
  std::map<std::array<int64_t, 5>, RopeAngles> rope_cache_;
  Tensor timestep_input_;  // [1, freq_dim] f32: the sinusoid of the current timestep
  const uint64_t id_ = next_model_id();
  static uint64_t next_model_id();
};

}  // namespace ditrun::wan

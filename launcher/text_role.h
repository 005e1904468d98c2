// The text role of `ditrun run` at work (launcher/text_schedule.h says who does what). An encoding rank encodes its
// prompts and starts sending each one's embeddings to the DiT ranks that need them; a DiT rank gets each prompt's
// embeddings from the prompt's encoder, or, on the shared role's encoding rank, encodes them itself right then.
#pragma once
#include <cstddef>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/mpi_runtime.h"
#include "comm/sends_in_flight.h"
#include "launcher/embeddings.h"
#include "launcher/job.h"
#include "launcher/job_clock.h"
#include "launcher/prompt_encoder.h"
#include "launcher/text_schedule.h"

namespace ditrun {

class TextEncodingRank {
 public:
  // pending: the prompts this run renders (the same list on every rank). All references outlive this object.
  TextEncodingRank(const TextSchedule& schedule, const Job& job, const std::vector<bool>& pending,
                   PromptEncoder& encoder, const comm::MpiRuntime& mpi, const JobClock& clock);
  TextEncodingRank(const TextEncodingRank&) = delete;
  TextEncodingRank& operator=(const TextEncodingRank&) = delete;

  // Before any prompt, on every encoder: the first encodes the default negative prompt (when a prompt to render
  // needs it) and sends it to the other encoders that need it, which receive it here.
  void start();
  // Encodes prompt i (one of this rank's) and starts sending its context and negative to the DiT ranks that need
  // them; returns what this rank needs of it itself (the shared role's encoding rank is a DiT rank). In the shared
  // role the sends are waited for here: the receivers are our replica's ranks, idle until they have them, and the
  // denoising that follows may be all NCCL, which moves no MPI message.
  PromptEmbedding encode_and_send(size_t i);
  // Dedicated role: every prompt of this rank, in order, without waiting for the DiT ranks to take them.
  void encode_all();
  // The other encoders send the first their new cache entries and it writes the cache file; then every encoder
  // waits for its sends to the DiT ranks. Every encoder calls it, last.
  void finish();

  // {"id": ..., "text": {rank, started_s, finished_s, seconds, encoded}} for each prompt encoded here.
  const nlohmann::json& prompt_entries() const { return entries_; }
  // This rank's totals: rank, prompts, texts, cache_hits, encoded, seconds.
  nlohmann::json summary() const;

 private:
  bool first() const { return mpi_.rank() == schedule_.encoders.at(0); }

  const TextSchedule& schedule_;
  const Job& job_;
  const std::vector<bool>& pending_;
  PromptEncoder& encoder_;
  const comm::MpiRuntime& mpi_;
  const JobClock& clock_;
  std::vector<size_t> mine_;                  // the prompts this rank encodes, in order
  std::vector<float> default_negative_;       // [rows, d_model] of the job's default negative prompt, when needed
  comm::SendsInFlight sends_;                  // reads from encoder_'s embeddings and default_negative_
  nlohmann::json entries_ = nlohmann::json::array();
};

// A DiT rank's embeddings when the run encodes its prompts: received from each prompt's encoder (tags by prompt
// index), or made by `own` when this rank is the prompt's encoder (shared role).
class ScheduledEmbeddings : public PromptEmbeddings {
 public:
  ScheduledEmbeddings(const TextSchedule& schedule, const comm::MpiRuntime& mpi, int text_dim,
                      TextEncodingRank* own);
  PromptEmbedding get(size_t index, const PromptItem& prompt, bool context, bool negative) override;

 private:
  const TextSchedule& schedule_;
  const comm::MpiRuntime& mpi_;
  int text_dim_;
  TextEncodingRank* own_;
};

}  // namespace ditrun

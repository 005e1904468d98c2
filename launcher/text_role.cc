#include "launcher/text_role.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace ditrun {

namespace {

bool holds(const std::vector<int>& ranks, int rank) {
  return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

Embedding as_embedding(std::vector<float> values, int64_t dim) {
  Embedding e;
  e.rows = dim > 0 ? static_cast<int64_t>(values.size()) / dim : 0;
  e.values = std::move(values);
  return e;
}

}  // namespace

TextEncodingRank::TextEncodingRank(const TextSchedule& schedule, const Job& job, const std::vector<bool>& pending,
                                   PromptEncoder& encoder, const comm::MpiRuntime& mpi, const JobClock& clock)
    : schedule_(schedule), job_(job), pending_(pending), encoder_(encoder), mpi_(mpi), clock_(clock),
      mine_(schedule.prompts_of(mpi.rank(), pending)) {}

void TextEncodingRank::start() {
  if (first()) {
    bool needed = false;
    for (size_t i = 0; i < schedule_.prompts.size(); ++i) needed |= pending_[i] && schedule_.prompts[i].default_negative;
    if (needed) {
      default_negative_ = encoder_.embed(job_.negative_prompt).values;  // the one encoding of it in this job
      for (size_t e = 1; e < schedule_.encoders.size(); ++e)
        if (schedule_.needs_default_negative(schedule_.encoders[e], pending_))
          mpi_.send_floats(default_negative_, schedule_.encoders[e], schedule_.default_negative_tag());
    }
  } else if (schedule_.needs_default_negative(mpi_.rank(), pending_)) {
    default_negative_ = mpi_.receive_floats(schedule_.encoders.at(0), schedule_.default_negative_tag());
  }
  if (mine_.empty()) encoder_.release_encoder();  // nothing (left) to encode here
}

PromptEmbedding TextEncodingRank::encode_and_send(size_t i) {
  const PromptRoute& route = schedule_.prompts.at(i);
  const PromptItem& p = job_.prompts.at(i);
  if (route.encoder != mpi_.rank() || !pending_.at(i))
    throw std::logic_error("text role: rank " + std::to_string(mpi_.rank()) + " asked to encode prompt " + p.id +
                           ", which is not its own");
  const double started = clock_.now();
  const auto start = std::chrono::steady_clock::now();
  int encoded = 0;
  bool ran = false;
  const std::vector<float>& context = encoder_.embed(p.prompt, &ran).values;
  encoded += ran;
  const std::vector<float>* negative = nullptr;
  if (!route.negative_ranks.empty()) {
    if (route.default_negative) {
      negative = &default_negative_;
    } else {
      negative = &encoder_.embed(p.negative_prompt, &ran).values;
      encoded += ran;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double finished = clock_.now();
  if (!mine_.empty() && i == mine_.back()) encoder_.release_encoder();  // nothing left to encode here

  const int me = mpi_.rank();
  for (int r : route.context_ranks)
    if (r != me) sends_.send_floats(context, r, TextSchedule::context_tag(i));
  for (int r : route.negative_ranks)
    if (r != me) sends_.send_floats(*negative, r, TextSchedule::negative_tag(i));
  if (schedule_.dedicated) sends_.progress();
  else sends_.wait_all();

  entries_.push_back({{"id", p.id},
                      {"text",
                       {{"rank", me},
                        {"started_s", started},
                        {"finished_s", finished},
                        {"seconds", seconds},
                        {"encoded", encoded}}}});
  const int64_t dim = encoder_.source().config.d_model;
  PromptEmbedding own;
  if (holds(route.context_ranks, me)) own.context = as_embedding(context, dim);
  if (holds(route.negative_ranks, me)) own.negative = as_embedding(*negative, dim);
  return own;
}

void TextEncodingRank::encode_all() {
  for (size_t i : mine_) encode_and_send(i);
}

void TextEncodingRank::finish() {
  // The cache first, so that it is written as soon as every encoder is done (the DiT ranks may take our last
  // prompts much later); the new entries are read from where the sends in flight read them too.
  const int tag = schedule_.cache_entries_tag();
  if (first()) {
    std::vector<NewCacheEntry> others;
    for (size_t e = 1; e < schedule_.encoders.size(); ++e) {
      const int from = schedule_.encoders[e];
      const auto list = nlohmann::json::parse(mpi_.receive_bytes(from, tag));
      for (const auto& item : list) {
        text::CachedEmbedding c;
        c.rows = item.at("rows").get<int64_t>();
        c.dim = item.at("dim").get<int64_t>();
        c.values = mpi_.receive_floats(from, tag);
        others.emplace_back(item.at("text").get<std::string>(), std::move(c));
      }
    }
    encoder_.save_cache(std::move(others));
  } else {
    const auto entries = encoder_.new_entries();
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [text, e] : entries) list.push_back({{"text", text}, {"rows", e->rows}, {"dim", e->dim}});
    const int to = schedule_.encoders.at(0);
    mpi_.send_bytes(list.dump(), to, tag);
    for (const auto& [text, e] : entries) mpi_.send_floats(e->values, to, tag);  // in order: same pair and tag
  }
  sends_.wait_all();
}

nlohmann::json TextEncodingRank::summary() const {
  return {{"rank", mpi_.rank()},           {"prompts", mine_.size()},          {"texts", encoder_.texts()},
          {"cache_hits", encoder_.hits()}, {"encoded", encoder_.encoded()}, {"seconds", encoder_.seconds()}};
}

ScheduledEmbeddings::ScheduledEmbeddings(const TextSchedule& schedule, const comm::MpiRuntime& mpi, int text_dim,
                                         TextEncodingRank* own)
    : schedule_(schedule), mpi_(mpi), text_dim_(text_dim), own_(own) {}

PromptEmbedding ScheduledEmbeddings::get(size_t index, const PromptItem& prompt, bool context, bool negative) {
  const PromptRoute& route = schedule_.prompts.at(index);
  const int me = mpi_.rank();
  // The schedule and the denoising loop ask the same question (launcher/cfg_passes.h); a mismatch would hang.
  if (context != holds(route.context_ranks, me) || negative != holds(route.negative_ranks, me))
    throw std::logic_error("text role: rank " + std::to_string(me) + " and the text schedule disagree on which " +
                           "embeddings of prompt " + prompt.id + " it needs");
  if (route.encoder == me) {
    if (!own_) throw std::logic_error("text role: rank " + std::to_string(me) + " encodes but has no encoder");
    return own_->encode_and_send(index);
  }
  PromptEmbedding e;
  if (context) e.context = as_embedding(mpi_.receive_floats(route.encoder, TextSchedule::context_tag(index)), text_dim_);
  if (negative)
    e.negative = as_embedding(mpi_.receive_floats(route.encoder, TextSchedule::negative_tag(index)), text_dim_);
  return e;
}

}  // namespace ditrun

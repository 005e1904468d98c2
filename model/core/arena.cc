#include "model/core/arena.h"

#include <algorithm>
#include <stdexcept>

namespace ditrun {

namespace {
constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Arena::Arena(std::function<void*(size_t)> allocate, std::function<void(void*)> release, size_t chunk_bytes)
    : allocate_(std::move(allocate)), release_(std::move(release)), chunk_bytes_(chunk_bytes) {}

Arena::~Arena() {
  for (auto& c : chunks_) release_(c.base);
}

void* Arena::allocate(size_t bytes) {
  bytes = align_up(std::max<size_t>(bytes, 1));
  while (chunk_ < chunks_.size() && offset_ + bytes > chunks_[chunk_].size) {
    used_before_chunk_ += chunks_[chunk_].size;
    ++chunk_;
    offset_ = 0;
  }
  if (chunk_ == chunks_.size()) {
    const size_t size = std::max(chunk_bytes_, bytes);
    void* base = allocate_(size);
    if (!base) throw std::runtime_error("arena: out of memory allocating " + std::to_string(size) + " bytes");
    chunks_.push_back({static_cast<char*>(base), size});
    ++growths_;
    offset_ = 0;
  }
  void* p = chunks_[chunk_].base + offset_;
  offset_ += bytes;
  high_water_ = std::max(high_water_, used_before_chunk_ + offset_);
  return p;
}

void Arena::rewind(Mark m) {
  chunk_ = m.chunk;
  offset_ = m.offset;
  used_before_chunk_ = 0;
  for (size_t i = 0; i < chunk_ && i < chunks_.size(); ++i) used_before_chunk_ += chunks_[i].size;
}

size_t Arena::capacity() const {
  size_t n = 0;
  for (const auto& c : chunks_) n += c.size;
  return n;
}

}  // namespace ditrun

// A planned scratch arena: bump allocation in chunks that are kept. The first denoising step sizes it; every later
// step reuses the same memory (reset), so nothing is allocated inside the step loop.
#pragma once
#include <cstddef>
#include <functional>
#include <vector>

namespace ditrun {

class Arena {
 public:
  // allocate/release: the device's allocator (malloc or cudaMalloc), called only when the arena grows.
  Arena(std::function<void*(size_t)> allocate, std::function<void(void*)> release, size_t chunk_bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(size_t bytes);  // 256-byte aligned
  // A position to return to: everything allocated after it is released by rewind.
  struct Mark {
    size_t chunk;
    size_t offset;
  };
  Mark mark() const { return {chunk_, offset_}; }
  void rewind(Mark m);
  // Rewinds to where the arena stood at construction when it goes out of scope: a piece of work's temporaries.
  class Scope {
   public:
    explicit Scope(Arena& arena) : arena_(arena), mark_(arena.mark()) {}
    ~Scope() { arena_.rewind(mark_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Arena& arena_;
    Mark mark_;
  };
  void reset() { rewind({0, 0}); }

  size_t capacity() const;            // bytes held
  size_t high_water() const { return high_water_; }
  void reset_high_water() { high_water_ = used_before_chunk_ + offset_; }  // to measure the next piece of work
  size_t growth_count() const { return growths_; }  // chunk allocations so far (flat after the first step)

 private:
  struct Chunk {
    char* base;
    size_t size;
  };
  std::function<void*(size_t)> allocate_;
  std::function<void(void*)> release_;
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  size_t chunk_ = 0;
  size_t offset_ = 0;
  size_t used_before_chunk_ = 0;
  size_t high_water_ = 0;
  size_t growths_ = 0;
};

}  // namespace ditrun

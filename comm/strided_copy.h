// Copies `rows` rows of `width` bytes between pitched buffers in the communicator's memory (host or device):
// the packing step around the Ulysses all-to-all.
#pragma once
#include <cstddef>

#include "comm/comm.h"

namespace ditrun::comm {

// Sets `rows` rows of `width` bytes to zero (padding heads before the Ulysses all-to-all).
void zero_strided(Memory memory, void* dst, size_t pitch, size_t width, size_t rows, Stream s);

void copy_strided(Memory memory, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                  size_t rows, Stream s);

}  // namespace ditrun::comm

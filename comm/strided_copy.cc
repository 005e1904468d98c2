#include "comm/strided_copy.h"

#include <cstring>

#include "comm/error.h"

#ifdef DITRUN_WITH_CUDA
#include "comm/cuda_check.h"
#endif

namespace ditrun::comm {

void zero_strided(Memory memory, void* dst, size_t pitch, size_t width, size_t rows, Stream s) {
  if (memory == Memory::device) {
#ifdef DITRUN_WITH_CUDA
    DITRUN_CUDA_CHECK(cudaMemset2DAsync(dst, pitch, 0, width, rows, static_cast<cudaStream_t>(s.handle)));
    return;
#else
    throw CommError("device memory in a build without CUDA");
#endif
  }
  auto* d = static_cast<char*>(dst);
  for (size_t r = 0; r < rows; ++r) std::memset(d + r * pitch, 0, width);
}

void copy_strided(Memory memory, void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                  size_t rows, Stream s) {
  if (memory == Memory::device) {
#ifdef DITRUN_WITH_CUDA
    DITRUN_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice,
                                        static_cast<cudaStream_t>(s.handle)));
    return;
#else
    throw CommError("device memory copy in a build without CUDA");
#endif
  }
  auto* d = static_cast<char*>(dst);
  const auto* p = static_cast<const char*>(src);
  for (size_t r = 0; r < rows; ++r) std::memcpy(d + r * dst_pitch, p + r * src_pitch, width);
}

}  // namespace ditrun::comm

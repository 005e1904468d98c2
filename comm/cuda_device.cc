#include "comm/cuda_device.h"

#include <string>

#include "comm/error.h"

#ifdef DITRUN_WITH_CUDA
#include "comm/cuda_check.h"
#endif

namespace ditrun::comm {

#ifdef DITRUN_WITH_CUDA
int cuda_device_count() {
  int count = 0;
  // No driver or no GPU is an answer (zero devices), not an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

int select_cuda_device(int local_rank) {
  const int count = cuda_device_count();
  if (count == 0) throw CommError("no CUDA device is visible to this rank");
  const int device = local_rank % count;
  DITRUN_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

const char* current_cuda_device_name() {
  static thread_local cudaDeviceProp prop;
  int device = 0;
  DITRUN_CUDA_CHECK(cudaGetDevice(&device));
  DITRUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

unsigned long long current_cuda_device_memory() {
  size_t free_bytes = 0, total = 0;
  DITRUN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return total;
}

unsigned long long current_cuda_device_memory_used() {
  if (cuda_device_count() == 0) return 0;  // a CUDA build on a machine without a GPU
  size_t free_bytes = 0, total = 0;
  DITRUN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return total - free_bytes;
}
#else
int cuda_device_count() { return 0; }
int select_cuda_device(int) { throw CommError("this ditrun was built without CUDA"); }
const char* current_cuda_device_name() { return "none"; }
unsigned long long current_cuda_device_memory() { return 0; }
unsigned long long current_cuda_device_memory_used() { return 0; }
#endif

}  // namespace ditrun::comm

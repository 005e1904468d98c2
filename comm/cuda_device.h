// Which GPU this rank uses: chosen by local rank among the visible devices (CUDA_VISIBLE_DEVICES is respected
// by the CUDA runtime itself).
#pragma once

namespace ditrun::comm {

// Number of usable CUDA devices; 0 in a CPU-only build or when no driver or GPU is present.
int cuda_device_count();
// Selects device local_rank % count for this process and returns it. Throws CommError without a device.
int select_cuda_device(int local_rank);
// Device name and total memory (bytes) of the current device, for the report.
const char* current_cuda_device_name();
unsigned long long current_cuda_device_memory();
// Bytes of the current device's memory in use (by every process on it), for benchmarks; 0 without a GPU.
unsigned long long current_cuda_device_memory_used();

}  // namespace ditrun::comm

// CUDA and NCCL return-code checks (only in files built with DITRUN_WITH_CUDA).
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include "comm/error.h"

#define DITRUN_CUDA_CHECK(call)                                                                   \
  do {                                                                                            \
    cudaError_t ditrun_status_ = (call);                                                          \
    if (ditrun_status_ != cudaSuccess)                                                            \
      ::ditrun::comm::throw_call_error("CUDA", #call, cudaGetErrorString(ditrun_status_), __FILE__, __LINE__); \
  } while (0)

#define DITRUN_NCCL_CHECK(call)                                                                   \
  do {                                                                                            \
    ncclResult_t ditrun_status_ = (call);                                                         \
    if (ditrun_status_ != ncclSuccess)                                                            \
      ::ditrun::comm::throw_call_error("NCCL", #call, ncclGetErrorString(ditrun_status_), __FILE__, __LINE__); \
  } while (0)

// cuBLASLt return-code check, in the style of DITRUN_CUDA_CHECK (comm/cuda_check.h). cublasLtGetStatusString is
// the cuBLASLt twin of cublasGetStatusString: it keeps libcublas out of the link.
#pragma once
#include <cublasLt.h>

#include "comm/error.h"

#define DITRUN_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    cublasStatus_t ditrun_status_ = (call);                                                       \
    if (ditrun_status_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::ditrun::comm::throw_call_error("cuBLAS", #call, cublasLtGetStatusString(ditrun_status_), __FILE__, __LINE__); \
  } while (0)

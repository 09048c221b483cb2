// Every CUDA and cuBLAS call goes through these checks: a failure becomes a dsv3::Error that names
// the call, never a silent wrong answer.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "dsv3/util/error.h"

#define DSV3_CUDA_CHECK(expr) ::dsv3::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define DSV3_CUBLAS_CHECK(expr) ::dsv3::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: a bad configuration shows up here, a fault at the next synchronisation.
#define DSV3_CUDA_CHECK_LAUNCH() DSV3_CUDA_CHECK(cudaGetLastError())

namespace dsv3::cuda {

inline void check_cuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) fail("CUDA error ", cudaGetErrorString(status), " in ", what, " (", file, ":", line, ")");
}

inline void check_cublas(cublasStatus_t status, const char* what, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLAS error ", cublasGetStatusString(status), " in ", what, " (", file, ":", line, ")");
}

}  // namespace dsv3::cuda

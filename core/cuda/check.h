// Error checks for CUDA, cuDNN and cuBLAS calls (GPU backend only). A failed call
// throws convnet::Error with the call's text, file:line, the rank and the
// library's own message, like every other check in convnet:
//
//   [rank 0] layers/cuda/conv2d_cudnn.cu:88: check failed: cudnnConvolutionForward(...)
//       == CUDNN_STATUS_SUCCESS: CUDNN_STATUS_BAD_PARAM
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "core/error.h"

#define CONVNET_CUDA(expr) CONVNET_CHECK_STATUS(expr, cudaSuccess, cudaGetErrorString)
#define CONVNET_CUDNN(expr) CONVNET_CHECK_STATUS(expr, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#define CONVNET_CUBLAS(expr) \
  CONVNET_CHECK_STATUS(expr, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
// After a kernel launch: throws naming the kernel when the launch failed
// (bad configuration, no kernel image for this GPU).
#define CONVNET_CUDA_LAUNCHED(kernel_name)                                         \
  do {                                                                             \
    const cudaError_t convnet_launch_ = cudaGetLastError();                        \
    CONVNET_CHECK(convnet_launch_ == cudaSuccess, "launching ", kernel_name, ": ", \
                  cudaGetErrorString(convnet_launch_));                            \
  } while (0)

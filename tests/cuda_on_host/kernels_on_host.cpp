// The kernel parts of layers/cuda/*.cu compiled by the host compiler against
// the host emulation of cuda_on_host.h (the kernels' own code, unchanged;
// CONVNET_CUDA_ON_HOST leaves out the layer classes).
#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include "layers/cuda/add_cuda.cu"
#include "layers/cuda/avg_pool2d_cuda.cu"
#include "layers/cuda/batch_norm_cudnn.cu"
#include "layers/cuda/channel_gate_cuda.cu"
#include "layers/cuda/global_avg_pool_cuda.cu"
#include "layers/cuda/max_pool2d_cuda.cu"
#include "layers/cuda/relu_cuda.cu"
#include "layers/cuda/sgd_cuda.cu"
#include "layers/cuda/softmax_cross_entropy_cuda.cu"
#include "layers/cuda/tensor_kernels.cu"

// CUDA device discovery (GPU backend only).
#pragma once

namespace convnet::cuda {
// Number of CUDA devices visible to this process; 0 without a driver or GPU.
int device_count();
}  // namespace convnet::cuda

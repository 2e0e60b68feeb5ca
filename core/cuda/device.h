// CUDA device discovery (GPU backend only): what a process can see, and why
// not; and the GPU each rank of a node drives.
#pragma once

#include <string>

namespace convnet::cuda {

// Number of CUDA devices visible to this process; 0 without a driver or GPU.
int device_count();
// Why device_count() is 0 ("no CUDA-capable device", "driver too old for
// this runtime", ...), or "ok".
std::string runtime_status();
// One line per device: index, name, compute capability, memory; and the
// driver, runtime and cuDNN versions.
std::string describe();

}  // namespace convnet::cuda

namespace convnet::cuda {

// The GPU a rank drives: its local rank. Throws, naming the counts, when this
// process sees no usable GPU or the node runs more ranks than it has GPUs.
int gpu_for_local_rank(int local_rank, int local_size);

}  // namespace convnet::cuda

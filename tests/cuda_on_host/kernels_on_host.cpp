// layers/cuda/kernels.cu compiled by the host compiler against the host
// emulation of cuda_on_host.h (the kernels' own code, unchanged).
#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include "layers/cuda/kernels.cu"

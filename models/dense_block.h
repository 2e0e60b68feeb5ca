// The memory-efficient dense block (Pleiss et al. 2017).
//
// One op computes a whole block of L dense layers. Its output (N, C0 + L*k, H, W)
// is the only per-block feature storage: the block input occupies channels
// [0, C0) and layer j writes its k new channels at [C0 + j*k, C0 + (j+1)*k).
// Layer j's concatenated input is those first C0 + j*k channels, copied into a
// scratch buffer (oneDNN's fast kernels need dense memory); its BN-ReLU output,
// the bottleneck conv's output and that output's BN-ReLU live in further
// scratch buffers. None of them is kept: backward recomputes each layer's
// from the block output, with the batch statistics its BNs saved (one extra
// 1x1 convolution per layer). The scratch is the context's, shared by every
// dense block of the net. Feature memory is therefore linear in depth instead
// of quadratic, with nothing stored per layer beyond its k output channels
// (and, blocked, the masks of the fused ReLUs below).
//
// Layout: the block's input, output and temporaries share one layout: nchw
// (both backends) or nchw8c / nchw16c (CPU). Blocked, a channel count that is
// not a multiple of the block (C0 + j*k) pads its last block, and the k new
// channels of a layer may start inside a block; write_channels
// (layers/layer.h) moves them. Blocked, each BN fuses its ReLU, and keeps the ReLU's mask for
// backward: one bit per element of its input (about 30 MiB for densenet_bc_100_k12 at batch 64),
// the only per-layer state.
//
// Parameters are registered under torchvision's names:
//   NAME.denselayer{j}.norm1.*, .conv1.weight, .norm2.*, .conv2.weight
// (without a bottleneck, bn_size == 0: norm1 and a 3x3 conv1 only).
#pragma once

#include <string>

#include "models/builder.h"

namespace convnet {

ValueId add_dense_block(NetBuilder& builder, ValueId x, const std::string& name, int layers,
                        int64_t growth_rate, int64_t bn_size);

}  // namespace convnet

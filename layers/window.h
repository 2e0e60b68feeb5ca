// Sliding-window arithmetic shared by the convolution and pooling layers.
#pragma once

#include <cstdint>
#include <string>

#include "core/shape.h"

namespace convnet {

// Output extent of a sliding window: (input + 2 * padding - kernel) / stride + 1
// (floor, as PyTorch with ceil_mode=False), or 0 when the kernel does not fit
// the padded input. With ceil_mode the division rounds up, as Caffe's pooling
// and PyTorch's ceil_mode=True, except that a last window starting past the
// input and its left padding is dropped (so every window holds an input
// element; the overhang on the right reads as padding).
int64_t window_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding,
                           bool ceil_mode = false);

// Validates a square 2-D pooling window over an (N, C, H, W) input and returns
// the output shape (N, C, H_out, W_out). Throws convnet::Error naming `layer`
// and the shapes unless: the input is rank 4 with every extent > 0, kernel and
// stride are > 0, 0 <= padding <= kernel / 2 (PyTorch's rule; it guarantees that
// every window holds at least one input element), and the kernel fits the
// padded input.
Shape pool2d_output_shape(const std::string& layer, const Shape& input, int64_t kernel,
                          int64_t stride, int64_t padding, bool ceil_mode = false);

}  // namespace convnet

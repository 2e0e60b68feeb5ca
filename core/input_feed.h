// InputFeed: the trainer's batches into the net's input tensor.
//
// On the CPU, commit() copies the batch into the input. On the GPU the next
// micro-batch travels while the current one computes: stage() copies a host
// batch into pinned memory and starts its transfer to a device staging
// buffer on a copy stream of its own (no wait for the compute stream);
// commit() makes the compute stream wait for that transfer (a CUDA event, no
// host wait) and copies the staging buffer into the input on the device. A
// pageable cudaMemcpyAsync instead waits for the compute stream to drain
// before it starts, stalling every step for the whole PCIe transfer.
//
// Use: stage(batch k + 1) after enqueuing batch k's backward, then
// commit(batch k + 1) before its forward. Images are f32 in the input's
// layout, input.numel() values.
#pragma once

#include <memory>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"

namespace convnet {

class InputFeed {
 public:
  InputFeed(Context& context, const Tensor& input);
  ~InputFeed();
  InputFeed(const InputFeed&) = delete;
  InputFeed& operator=(const InputFeed&) = delete;

  // Starts moving `images` towards the device (GPU); nothing on the CPU.
  void stage(const std::vector<float>& images);
  // Makes the last staged batch (`images`) the net's input.
  void commit(const std::vector<float>& images);

 private:
  struct Gpu;  // pinned buffer, staging tensor, copy stream, events
  Tensor input_;
  std::unique_ptr<Gpu> gpu_;
};

}  // namespace convnet

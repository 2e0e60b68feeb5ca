// SGD with momentum over one flat parameter buffer, with PyTorch's semantics
// (torch.optim.SGD):
//
//   d = g + wd * w                  (wd = 0 on segments excluded from decay)
//   v = d                           on the first step
//   v = momentum * v + (1 - dampening) * d   afterwards
//   d = nesterov ? d + momentum * v : v
//   w = w - lr * d
//
// Parameters, gradients and the momentum buffer are each one contiguous f32
// buffer of num_params elements (the model lays parameters out in it). The
// segments tile that buffer in order and say which ranges get weight decay
// (BN and bias parameters are usually excluded). The gradient buffer is only
// read; zeroing it is the trainer's job.
#pragma once

#include <cstdint>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"

namespace convnet {

struct SgdOptions {
  double momentum = 0.9;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// Elements [offset, offset + size) of the flat buffer.
struct ParamSegment {
  int64_t offset = 0;
  int64_t size = 0;
  bool apply_weight_decay = true;
};

class Sgd {
 public:
  // Throws on invalid options (negative values, nesterov without momentum or
  // with dampening, as PyTorch) or segments that do not tile [0, num_params).
  Sgd(Context& context, const SgdOptions& options, std::vector<ParamSegment> segments,
      int64_t num_params);

  // One update with learning rate lr (the schedule's value for this step).
  // params (num_params) is updated in place; grads (num_params) is read and
  // multiplied by grad_scale first (1 / loss scale under fp16 loss scaling;
  // multiplying by 1 is exact).
  void step(const Tensor& params, const Tensor& grads, double lr, double grad_scale = 1.0);

  const SgdOptions& options() const { return options_; }
  int64_t num_params() const { return num_params_; }
  // Steps taken so far; 0 means the momentum buffer is not yet initialised.
  int64_t step_count() const { return step_count_; }
  // The momentum buffer v (num_params), for checkpoints; restoring it also
  // needs set_step_count.
  const Tensor& momentum_buffer() const { return momentum_; }
  Tensor& mutable_momentum_buffer() { return momentum_; }
  void set_step_count(int64_t steps);

 private:
  SgdOptions options_;
  std::vector<ParamSegment> segments_;
  int64_t num_params_;
  int64_t step_count_ = 0;
  void step_cuda(const Tensor& params, const Tensor& grads, double lr, float grad_scale);

  Tensor momentum_;         // (num_params), on the context's device
  void* stream_ = nullptr;  // the context's cudaStream_t (GPU backend)
  // GPU: the segments' ends (int64) then their weight decays (f32), so that
  // one launch updates every segment.
  Tensor segment_table_;
};

}  // namespace convnet

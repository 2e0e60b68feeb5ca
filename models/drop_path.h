// Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic
// Depth"): during training a residual block's branch is dropped, leaving the
// identity (or projection) shortcut alone, with a probability that grows
// linearly with depth, p_b = P * b / (B - 1) for blocks b = 0 .. B-1 (the
// first never, the last with P; as timm's drop_path_rate schedule).
//
// Per step, as the paper: a block is dropped for the whole global batch of a
// step (every micro-batch, every rank), by a SplitMix64 draw of (seed, step,
// block), so data-parallel runs and resumed runs drop the same blocks. Scaled
// as timm's drop_path: a kept branch is multiplied by 1 / (1 - p_b) in
// training, so evaluation uses every branch as it is (the paper instead
// scales by 1 - p_b at evaluation; the two agree in expectation).
// A dropped branch still runs forward (its BatchNorm statistics move) but
// passes no gradient back: its parameters get none from this step.
#pragma once

#include <cstdint>

#include "models/net.h"

namespace convnet {

// Whether block `block` is dropped at `step` with probability `p`.
bool drop_path_dropped(uint64_t seed, int64_t step, int64_t block, double p);

// y = 0 (dropped) or x / (1 - p) (kept) in training, y = x in inference;
// may run in place.
class DropPathOp final : public Op {
 public:
  DropPathOp(const StepState& state, int64_t block, double p);
  bool can_run_in_place() const override { return true; }
  bool backward_needs_input(int) const override { return false; }
  void forward(Mode mode, const std::vector<Tensor>& in, const Tensor& out) override;
  void backward(const std::vector<Tensor>& in, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override;

 private:
  const StepState& state_;
  int64_t block_;
  double p_;
  bool dropped_ = false;  // in the last forward
  float scale_ = 1;       // of the last forward
};

}  // namespace convnet

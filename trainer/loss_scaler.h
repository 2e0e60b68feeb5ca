// Dynamic loss scaling for fp16 mixed precision (Micikevicius et al. 2018;
// the policy of torch.cuda.amp.GradScaler's defaults).
//
// fp16 has 5 exponent bits: activation gradients below 2^-24 flush to zero.
// The trainer multiplies the loss gradient by scale() before backward, so
// every gradient is scale() times too large, and the optimizer multiplies by
// 1 / scale() (Sgd::step's grad_scale). A step whose averaged gradients hold
// an inf or NaN (an overflow at this scale) is skipped: no weight or
// momentum update, the scale is halved. After `growth_interval` applied
// steps in a row the scale doubles. Every rank sees the same averaged
// gradients, so every rank makes the same decision.
//
// Disabled (fp32, tf32, bf16: bf16 has f32's exponent range), scale() is 1
// and every step is applied.
#pragma once

#include <cstdint>

namespace convnet {

struct LossScalerOptions {
  double initial_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  // Below this scale every step keeps overflowing (the model has diverged):
  // update() throws instead of skipping forever.
  double min_scale = 1.0 / 16384.0;  // 2^-14
  // Steps in a row whose forward overflowed (see skip_forward_overflow)
  // before the run stops.
  int64_t max_forward_overflows = 10;
};

class LossScaler {
 public:
  explicit LossScaler(bool enabled, const LossScalerOptions& options = {});

  bool enabled() const { return enabled_; }
  // The factor of this step's loss gradient (1 when disabled).
  double scale() const { return scale_; }
  // Records whether this step's averaged gradients were all finite and
  // returns true when the step is to be applied. Throws (naming the scale)
  // when an overflow would bring the scale below min_scale.
  bool update(bool gradients_finite);
  // A step whose loss was inf or NaN: an activation beyond fp16's range in
  // forward, which the loss scale does not affect. The step is skipped (and
  // counted) without changing the scale; throws after
  // max_forward_overflows such steps in a row.
  void skip_forward_overflow();

  // Applied steps since the scale last changed, and skipped steps in all.
  int64_t good_steps() const { return good_steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  // Resumes from a checkpoint (exact resume: the same future scales).
  void restore(double scale, int64_t good_steps, int64_t skipped_steps);

 private:
  bool enabled_;
  LossScalerOptions options_;
  double scale_ = 1.0;
  int64_t good_steps_ = 0, skipped_steps_ = 0;
  int64_t forward_overflows_in_a_row_ = 0;
};

}  // namespace convnet

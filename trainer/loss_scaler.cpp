#include "trainer/loss_scaler.h"

#include "core/error.h"

namespace convnet {

LossScaler::LossScaler(bool enabled, const LossScalerOptions& options)
    : enabled_(enabled), options_(options) {
  CONVNET_CHECK(options.initial_scale > 0 && options.growth_factor >= 1 &&
                    options.backoff_factor > 0 && options.backoff_factor < 1 &&
                    options.growth_interval > 0 && options.min_scale > 0,
                "invalid loss scaler options");
  if (enabled_) scale_ = options.initial_scale;
}

bool LossScaler::update(bool gradients_finite) {
  if (!enabled_) return true;
  forward_overflows_in_a_row_ = 0;
  if (gradients_finite) {
    if (++good_steps_ >= options_.growth_interval) {
      scale_ *= options_.growth_factor;
      good_steps_ = 0;
    }
    return true;
  }
  ++skipped_steps_;
  good_steps_ = 0;
  const double next = scale_ * options_.backoff_factor;
  CONVNET_CHECK(next >= options_.min_scale, "fp16 loss scaling: the gradients overflow even at a ",
                "loss scale of ", scale_, " (", skipped_steps_,
                " steps skipped so far); training has diverged (lower --lr, add "
                "--warmup-epochs, or use --precision bf16)");
  scale_ = next;
  return false;
}

void LossScaler::skip_forward_overflow() {
  CONVNET_CHECK(enabled_, "skip_forward_overflow without loss scaling");
  ++skipped_steps_;
  CONVNET_CHECK(++forward_overflows_in_a_row_ < options_.max_forward_overflows,
                "fp16: the loss was inf or NaN at ", forward_overflows_in_a_row_,
                " steps in a row (activations beyond fp16's range in forward, which loss scaling "
                "cannot help); use --precision bf16, or lower --lr");
}

void LossScaler::restore(double scale, int64_t good_steps, int64_t skipped_steps) {
  CONVNET_CHECK(scale > 0 && good_steps >= 0 && skipped_steps >= 0,
                "invalid loss scaler state: ", "scale ", scale, ", good steps ", good_steps,
                ", skipped ", skipped_steps);
  if (!enabled_) return;
  scale_ = scale;
  good_steps_ = good_steps;
  skipped_steps_ = skipped_steps;
}

}  // namespace convnet

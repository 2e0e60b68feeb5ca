#include "trainer/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace convnet {

LrSchedule::LrSchedule(const LrScheduleOptions& options, int64_t steps_per_epoch)
    : options_(options), steps_per_epoch_(steps_per_epoch) {
  CONVNET_CHECK(steps_per_epoch > 0, "LR schedule: no steps per epoch");
  CONVNET_CHECK(options.base_lr >= 0 && options.warmup_epochs >= 0 && options.gamma > 0 &&
                    options.step_size > 0,
                "LR schedule: --lr and --warmup-epochs must be >= 0, --gamma and --step-size > 0");
  warmup_steps_ = static_cast<int64_t>(std::llround(options.warmup_epochs * steps_per_epoch));
  std::sort(options_.milestones.begin(), options_.milestones.end());
}

double LrSchedule::lr(int64_t step) const {
  const double base = options_.base_lr;
  if (step < warmup_steps_) return base * static_cast<double>(step + 1) / warmup_steps_;
  const double epoch = static_cast<double>(step) / steps_per_epoch_;
  switch (options_.kind) {
    case LrScheduleKind::constant:
      return base;
    case LrScheduleKind::step:
      return base * std::pow(options_.gamma, std::floor(epoch / options_.step_size));
    case LrScheduleKind::multistep: {
      const double whole = std::floor(epoch);
      const auto passed =
          std::upper_bound(options_.milestones.begin(), options_.milestones.end(), whole) -
          options_.milestones.begin();
      return base * std::pow(options_.gamma, static_cast<double>(passed));
    }
    case LrScheduleKind::cosine: {
      const double total = static_cast<double>(options_.epochs * steps_per_epoch_ - warmup_steps_);
      const double t = std::min(static_cast<double>(step - warmup_steps_), total);
      const double floor = options_.lr_min;
      return total <= 0 ? base : floor + (base - floor) * 0.5 * (1.0 + std::cos(M_PI * t / total));
    }
  }
  return base;
}

}  // namespace convnet

// Learning-rate schedules, evaluated per iteration (global step).
//
// With e = step / steps_per_epoch (fractional epochs):
//   constant    base
//   step        base * gamma^floor(e / step_size)
//   multistep   base * gamma^(number of milestones <= floor(e))   (torch MultiStepLR)
//   cosine      min + (base - min) * (1 + cos(pi * t / T)) / 2, t and T in steps after
//               the warmup, min = lr_min (timm's --lr-min; 0 by default)
// Linear warmup (Goyal et al. 2017) over the first warmup_epochs replaces the
// above with base * (step + 1) / warmup_steps, reaching base at its end.
// base is the configured LR, times global batch / 256 with linear scaling
// (applied by the caller).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/named_values.h"

namespace convnet {

enum class LrScheduleKind { constant, step, multistep, cosine };
template <>
struct NamedValues<LrScheduleKind> {
  static constexpr std::pair<LrScheduleKind, const char*> table[] = {
      {LrScheduleKind::constant, "constant"},
      {LrScheduleKind::step, "step"},
      {LrScheduleKind::multistep, "multistep"},
      {LrScheduleKind::cosine, "cosine"}};
};

struct LrScheduleOptions {
  LrScheduleKind kind = LrScheduleKind::multistep;
  double base_lr = 0.1;
  double warmup_epochs = 0;
  std::vector<double> milestones;  // epochs (multistep)
  double step_size = 30;           // epochs (step)
  double gamma = 0.1;
  int64_t epochs = 1;  // total (cosine)
  double lr_min = 0;   // cosine's floor
};

class LrSchedule {
 public:
  LrSchedule(const LrScheduleOptions& options, int64_t steps_per_epoch);
  double lr(int64_t step) const;

 private:
  LrScheduleOptions options_;
  int64_t steps_per_epoch_;
  int64_t warmup_steps_;
};

}  // namespace convnet

#include "trainer/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

namespace convnet {
namespace {

// 10 steps per epoch throughout.
TEST(LrSchedule, MultistepDecaysAtMilestoneEpochs) {
  LrScheduleOptions o;
  o.base_lr = 0.4;
  o.milestones = {3, 6};
  const LrSchedule s(o, 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.4);
  EXPECT_DOUBLE_EQ(s.lr(29), 0.4);
  EXPECT_NEAR(s.lr(30), 0.04, 1e-15);
  EXPECT_NEAR(s.lr(59), 0.04, 1e-15);
  EXPECT_NEAR(s.lr(60), 0.004, 1e-15);
}

TEST(LrSchedule, StepAndConstant) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::step;
  o.base_lr = 1.0;
  o.step_size = 2;
  o.gamma = 0.5;
  const LrSchedule s(o, 10);
  EXPECT_DOUBLE_EQ(s.lr(19), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(20), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(45), 0.25);
  o.kind = LrScheduleKind::constant;
  EXPECT_DOUBLE_EQ(LrSchedule(o, 10).lr(1000), 1.0);
}

TEST(LrSchedule, LinearWarmupThenCosinePerIteration) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::cosine;
  o.base_lr = 0.8;
  o.warmup_epochs = 0.5;  // 5 steps
  o.epochs = 3;           // 30 steps: 25 of cosine
  const LrSchedule s(o, 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.8 * 1 / 5);
  EXPECT_DOUBLE_EQ(s.lr(4), 0.8);
  EXPECT_DOUBLE_EQ(s.lr(5), 0.8);  // cosine starts at the base
  EXPECT_NEAR(s.lr(5 + 12), 0.8 * 0.5 * (1 + std::cos(M_PI * 12 / 25)), 1e-12);
  EXPECT_NEAR(s.lr(29), 0.8 * 0.5 * (1 + std::cos(M_PI * 24 / 25)), 1e-12);
}

// --lr-min: the cosine ends at the floor instead of 0 (timm's lr_min).
TEST(LrSchedule, CosineEndsAtLrMin) {
  LrScheduleOptions o;
  o.kind = LrScheduleKind::cosine;
  o.base_lr = 0.5;
  o.lr_min = 0.1;
  o.epochs = 2;  // 20 steps
  const LrSchedule s(o, 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.5);
  EXPECT_NEAR(s.lr(10), 0.1 + 0.4 * 0.5, 1e-12);  // halfway: the middle
  EXPECT_NEAR(s.lr(20), 0.1, 1e-12);              // the end (and past it)
}

TEST(LrSchedule, BadNamesAndValues) {
  EXPECT_FALSE(find_named<LrScheduleKind>("exponential").has_value());
  LrScheduleOptions o;
  o.gamma = 0;
  EXPECT_THROW(LrSchedule(o, 10), Error);
  EXPECT_THROW(LrSchedule(LrScheduleOptions{}, 0), Error);
}

}  // namespace
}  // namespace convnet

#include "trainer/loss_scaler.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace convnet {
namespace {

TEST(LossScaler, DisabledIsOneAndAppliesEveryStep) {
  LossScaler s(false);
  EXPECT_EQ(s.scale(), 1.0);
  EXPECT_TRUE(s.update(true));
  EXPECT_TRUE(s.update(false));  // bf16 / fp32: no skipping
  EXPECT_EQ(s.scale(), 1.0);
  EXPECT_EQ(s.skipped_steps(), 0);
}

TEST(LossScaler, HalvesAndSkipsOnOverflowGrowsAfterInterval) {
  LossScalerOptions o;
  o.initial_scale = 1024;
  o.growth_interval = 3;
  LossScaler s(true, o);
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_FALSE(s.update(false));
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_TRUE(s.update(true));
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.good_steps(), 2);
  EXPECT_TRUE(s.update(true));  // the third applied step in a row
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_EQ(s.good_steps(), 0);
  EXPECT_TRUE(s.update(true));
  EXPECT_FALSE(s.update(false));  // an overflow restarts the count
  EXPECT_EQ(s.good_steps(), 0);
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.skipped_steps(), 2);
}

TEST(LossScaler, RestoreContinuesExactly) {
  LossScalerOptions o;
  o.growth_interval = 4;
  LossScaler a(true, o), b(true, o);
  for (bool finite : {true, false, true, true}) a.update(finite);
  b.restore(a.scale(), a.good_steps(), a.skipped_steps());
  for (bool finite : {true, true, false, true, true, true, true}) {
    EXPECT_EQ(a.update(finite), b.update(finite));
    EXPECT_EQ(a.scale(), b.scale());
  }
  EXPECT_EQ(a.skipped_steps(), b.skipped_steps());
  EXPECT_THROW(b.restore(0, 0, 0), Error);
}

TEST(LossScaler, PersistentOverflowIsDivergenceNotAnEndlessSkip) {
  LossScalerOptions o;
  o.initial_scale = 4;
  o.min_scale = 1;
  LossScaler s(true, o);
  EXPECT_FALSE(s.update(false));
  EXPECT_FALSE(s.update(false));
  EXPECT_EQ(s.scale(), 1);
  try {
    s.update(false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overflow even at a loss scale of 1"), std::string::npos)
        << e.what();
  }
}

TEST(LossScaler, ForwardOverflowSkipsWithoutChangingTheScaleAndStopsWhenPersistent) {
  LossScalerOptions o;
  o.initial_scale = 256;
  o.max_forward_overflows = 3;
  LossScaler s(true, o);
  s.skip_forward_overflow();
  s.skip_forward_overflow();
  EXPECT_EQ(s.scale(), 256);
  EXPECT_EQ(s.skipped_steps(), 2);
  EXPECT_TRUE(s.update(true));  // an applied step ends the run of overflows
  s.skip_forward_overflow();
  s.skip_forward_overflow();
  EXPECT_THROW(s.skip_forward_overflow(), Error);
  LossScaler off(false);
  EXPECT_THROW(off.skip_forward_overflow(), Error);
}

}  // namespace
}  // namespace convnet

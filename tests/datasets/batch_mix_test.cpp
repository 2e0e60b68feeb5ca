#include "datasets/batch_mix.h"

#include <gtest/gtest.h>

#include <cmath>

namespace convnet {
namespace {

// count samples of (C, H, W) with distinct values everywhere.
std::vector<float> distinct_images(int64_t count, int64_t per_sample) {
  std::vector<float> images(static_cast<std::size_t>(count * per_sample));
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = 1.0f + float(i);
  return images;
}

TEST(BatchMix, MixupBlendsEachSampleWithItsReverse) {
  const int64_t n = 4, c = 2, h = 3, w = 5, per = c * h * w;
  const std::vector<float> source = distinct_images(n, per);
  std::vector<float> images = source;
  const std::vector<int64_t> labels{0, 1, 2, 3};
  std::vector<int64_t> labels_b;
  const MixOptions o{.mixup_alpha = 1.0};
  const double lambda = mix_batch(o, 7, 0, 3, n, c, h, w, false, images, labels, labels_b);
  ASSERT_GT(lambda, 0);
  ASSERT_LT(lambda, 1);
  EXPECT_EQ(labels_b, (std::vector<int64_t>{3, 2, 1, 0}));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t k = 0; k < per; ++k)
      EXPECT_FLOAT_EQ(images[s * per + k], float(lambda) * source[s * per + k] +
                                               float(1 - lambda) * source[(n - 1 - s) * per + k]);
  // The same (seed, epoch, micro-batch) mixes alike; another micro-batch otherwise.
  std::vector<float> again = source, other = source;
  EXPECT_EQ(mix_batch(o, 7, 0, 3, n, c, h, w, false, again, labels, labels_b), lambda);
  EXPECT_NE(mix_batch(o, 7, 0, 4, n, c, h, w, false, other, labels, labels_b), lambda);
}

// CutMix copies one box of the partner into every channel; lambda is the
// share of pixels kept.
TEST(BatchMix, CutMixPastesABoxAndCorrectsLambda) {
  const int64_t n = 3, c = 3, h = 16, w = 12, per = c * h * w;
  for (bool channels_last : {false, true}) {
    const std::vector<float> source = distinct_images(n, per);
    int boxes = 0;
    for (int64_t micro = 0; micro < 20; ++micro) {
      std::vector<float> images = source;
      std::vector<int64_t> labels_b;
      const MixOptions o{.cutmix_alpha = 1.0};
      const double lambda =
          mix_batch(o, 1, 2, micro, n, c, h, w, channels_last, images, {5, 6, 7}, labels_b);
      int64_t taken = 0;
      for (int64_t k = 0; k < per; ++k) {
        const float own = source[k], partner = source[2 * per + k];
        ASSERT_TRUE(images[k] == own || images[k] == partner);
        taken += images[k] == partner;
      }
      ASSERT_EQ(taken % c, 0);  // every channel alike
      EXPECT_DOUBLE_EQ(lambda, 1.0 - double(taken / c) / double(h * w));
      EXPECT_EQ(labels_b, (std::vector<int64_t>{7, 6, 5}));
      boxes += taken > 0;
    }
    EXPECT_GT(boxes, 10);
  }
}

TEST(BatchMix, ProbabilitiesAndBetaDraws) {
  std::vector<float> images = distinct_images(2, 4);
  std::vector<int64_t> labels_b;
  const MixOptions never{.mixup_alpha = 1.0, .prob = 0.0};
  EXPECT_EQ(mix_batch(never, 1, 0, 0, 2, 1, 2, 2, false, images, {0, 1}, labels_b), 1.0);
  EXPECT_TRUE(labels_b.empty());
  EXPECT_EQ(mix_batch({}, 1, 0, 0, 2, 1, 2, 2, false, images, {0, 1}, labels_b), 1.0);
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
  for (double alpha : {0.2, 1.0, 4.0}) {
    uint64_t state = 99;
    double sum = 0, sum_sq = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
      const double x = beta_draw(alpha, state);
      ASSERT_TRUE(x >= 0 && x <= 1);
      sum += x;
      sum_sq += x * x;
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.01) << alpha;
    EXPECT_NEAR(var, 1.0 / (4 * (2 * alpha + 1)), 0.01) << alpha;
  }
}

}  // namespace
}  // namespace convnet

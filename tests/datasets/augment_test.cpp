#include "datasets/augment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace convnet {
namespace {

Image gray_ramp(int64_t h, int64_t w, int64_t c) {
  Image image{h, w, c, std::vector<uint8_t>(static_cast<std::size_t>(h * w * c))};
  for (std::size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = uint8_t(7 + p % 200);
  return image;
}

AugmentOptions erasing(double p, int64_t channels, bool channels_last = false) {
  AugmentOptions o;
  o.recipe = Recipe::none;
  o.seed = 3;
  o.mean.assign(static_cast<std::size_t>(channels), 0.01);  // no pixel normalizes to 0
  o.std.assign(static_cast<std::size_t>(channels), 0.5);
  o.channels_last = channels_last;
  o.random_erase = p;
  return o;
}

// With p = 1 one rectangle of every channel is 0 (the mean colour after
// normalization) and the rest is the image; its size follows the draw.
TEST(RandomErasing, ZeroesOneRectangleInEveryChannel) {
  const Image image = gray_ramp(20, 24, 3);
  for (bool channels_last : {false, true}) {
    std::vector<float> plain(20 * 24 * 3), erased(plain.size());
    AugmentOptions off = erasing(0, 3, channels_last), on = erasing(1, 3, channels_last);
    preprocess(image, off, 0, 5, 20, 24, plain.data());
    preprocess(image, on, 0, 5, 20, 24, erased.data());
    SampleRng rng(on.seed, 0, 5);
    rng.uniform();  // the p draw
    EraseBox box;
    ASSERT_TRUE(random_erasing_box(20, 24, rng, &box));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 20; ++y)
        for (int64_t x = 0; x < 24; ++x) {
          const int64_t i = channels_last ? (y * 24 + x) * 3 + c : (c * 20 + y) * 24 + x;
          const bool inside =
              y >= box.top && y < box.top + box.height && x >= box.left && x < box.left + box.width;
          ASSERT_EQ(erased[i], inside ? 0.0f : plain[i]) << c << " " << y << " " << x;
        }
    const double share = double(box.height * box.width) / (20 * 24);
    EXPECT_GT(share, 0.01);
    EXPECT_LT(share, 0.4);
  }
}

// Draws depend on (seed, epoch, sample) only; p is the share of erased
// samples; evaluation never erases.
TEST(RandomErasing, DeterministicWithProbabilityP) {
  const Image image = gray_ramp(16, 16, 1);
  const AugmentOptions half = erasing(0.5, 1);
  int erased = 0;
  for (int64_t index = 0; index < 1000; ++index) {
    std::vector<float> a(256), b(256);
    preprocess(image, half, 2, index, 16, 16, a.data());
    preprocess(image, half, 2, index, 16, 16, b.data());
    ASSERT_EQ(a, b);
    erased += std::count(a.begin(), a.end(), 0.0f) > 0;
  }
  EXPECT_GT(erased, 440);
  EXPECT_LT(erased, 560);
  AugmentOptions eval = erasing(1, 1);
  eval.train = false;
  std::vector<float> out(256);
  preprocess(image, eval, 0, 1, 16, 16, out.data());
  EXPECT_EQ(std::count(out.begin(), out.end(), 0.0f), 0);
}

// The rectangle's distribution against torchvision's RandomErasing.get_params
// (scale 0.02-0.33, ratio 0.3-3.3) on 32x32 images, measured with
// /usr/bin/python3 over 100,000 draws: mean height 13.569, mean width 13.612,
// mean area 17.42% of the image, no draw without a fit.
TEST(RandomErasing, BoxesFollowTorchvisionsDistribution) {
  double h = 0, w = 0, area = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    SampleRng rng(9, 0, i);
    EraseBox box;
    ASSERT_TRUE(random_erasing_box(32, 32, rng, &box));
    ASSERT_TRUE(box.top >= 0 && box.left >= 0 && box.top + box.height <= 32 &&
                box.left + box.width <= 32);
    h += box.height;
    w += box.width;
    area += double(box.height * box.width) / 1024;
  }
  EXPECT_NEAR(h / n, 13.569, 0.1);
  EXPECT_NEAR(w / n, 13.612, 0.1);
  EXPECT_NEAR(area / n, 0.1742, 0.002);
}

}  // namespace
}  // namespace convnet

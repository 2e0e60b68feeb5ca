#include "datasets/batch_mix.h"

#include <algorithm>
#include <cmath>

#include "datasets/splitmix64.h"

namespace convnet {
namespace {

double uniform(uint64_t& state) {  // [0, 1)
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

double normal(uint64_t& state) {  // Box-Muller
  const double u = 1.0 - uniform(state), v = uniform(state);
  return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
}

double gamma_draw(double shape, uint64_t& state) {
  if (shape < 1) return gamma_draw(shape + 1, state) * std::pow(1.0 - uniform(state), 1.0 / shape);
  const double d = shape - 1.0 / 3, c = 1.0 / std::sqrt(9 * d);
  for (;;) {
    double x, v;
    do {
      x = normal(state);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - uniform(state);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

// Element (sample, channel, y, x) of the batch.
struct Layout4 {
  int64_t c, h, w;
  bool channels_last;
  int64_t at(int64_t n, int64_t ch, int64_t y, int64_t x) const {
    return channels_last ? ((n * h + y) * w + x) * c + ch : ((n * c + ch) * h + y) * w + x;
  }
};

void mixup(double lambda, int64_t count, int64_t per_sample, std::vector<float>& images) {
  const std::vector<float> source = images;
  const auto l = static_cast<float>(lambda);
  for (int64_t n = 0; n < count; ++n)
    for (int64_t k = 0; k < per_sample; ++k)
      images[n * per_sample + k] =
          l * source[n * per_sample + k] + (1 - l) * source[(count - 1 - n) * per_sample + k];
}

// Pastes the box of the reversed batch; returns the corrected lambda.
double cutmix(double lambda, uint64_t& state, int64_t count, const Layout4& l,
              std::vector<float>& images) {
  const double cut = std::sqrt(1.0 - lambda);
  const auto cut_h = static_cast<int64_t>(l.h * cut), cut_w = static_cast<int64_t>(l.w * cut);
  const auto cy = static_cast<int64_t>(uniform(state) * l.h);
  const auto cx = static_cast<int64_t>(uniform(state) * l.w);
  const int64_t y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, l.h),
                y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, l.h);
  const int64_t x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, l.w),
                x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, l.w);
  const std::vector<float> source = images;
  for (int64_t n = 0; n < count; ++n)
    for (int64_t ch = 0; ch < l.c; ++ch)
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x)
          images[l.at(n, ch, y, x)] = source[l.at(count - 1 - n, ch, y, x)];
  return 1.0 - double((y1 - y0) * (x1 - x0)) / double(l.h * l.w);
}

}  // namespace

double beta_draw(double alpha, uint64_t& state) {
  const double a = gamma_draw(alpha, state), b = gamma_draw(alpha, state);
  return a / (a + b);
}

double mix_batch(const MixOptions& o, uint64_t seed, int64_t epoch, int64_t global_micro,
                 int64_t count, int64_t channels, int64_t height, int64_t width, bool channels_last,
                 std::vector<float>& images, const std::vector<int64_t>& labels,
                 std::vector<int64_t>& labels_b) {
  labels_b.clear();
  if (!o.enabled()) return 1.0;
  uint64_t state = splitmix64_mix(seed ^ 0x6d69787570ULL) ^ splitmix64_mix(uint64_t(epoch) + 1) ^
                   splitmix64_mix(splitmix64_mix(uint64_t(global_micro) + 7));
  if (uniform(state) >= o.prob) return 1.0;
  const bool use_cutmix =
      o.cutmix_alpha > 0 && (o.mixup_alpha <= 0 || uniform(state) < o.switch_prob);
  double lambda = beta_draw(use_cutmix ? o.cutmix_alpha : o.mixup_alpha, state);
  if (use_cutmix)
    lambda = cutmix(lambda, state, count, {channels, height, width, channels_last}, images);
  else
    mixup(lambda, count, channels * height * width, images);
  labels_b.assign(labels.rbegin(), labels.rend());
  return lambda;
}

}  // namespace convnet

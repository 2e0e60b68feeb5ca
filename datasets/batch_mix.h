// Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a training
// micro-batch, as timm's Mixup in its per-batch mode: with probability
// `prob` the micro-batch is mixed with itself in reverse order, by CutMix
// with probability `switch_prob` when both are enabled (else the enabled
// one), with lambda ~ Beta(alpha, alpha):
//   mixup   x_i = lambda x_i + (1 - lambda) x_{N-1-i}
//   cutmix  a box of area (1 - lambda) H W (centre uniform, clipped to the
//           image) of x_i replaced by x_{N-1-i}'s; lambda = 1 - box area / (H W)
// and the targets lambda onehot(labels_i) + (1 - lambda) onehot(labels_{N-1-i})
// (the loss is linear in its target: trainer/train_step.cpp). Every draw
// comes from (seed, epoch, global micro-batch), so the mixing depends on
// neither the rank count nor a resume.
#pragma once

#include <cstdint>
#include <vector>

namespace convnet {

struct MixOptions {
  double mixup_alpha = 0, cutmix_alpha = 0;  // 0: off
  double prob = 1.0;                         // of mixing a micro-batch
  double switch_prob = 0.5;                  // of CutMix when both are on
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

// A deterministic Beta(alpha, alpha) draw from uniforms of `state`
// (Marsaglia and Tsang's gamma method).
double beta_draw(double alpha, uint64_t& state);

// Mixes images (count, C, H, W) or (count, H, W, C) in place; sets
// labels_b to the partner labels and returns lambda (1: left unmixed,
// labels_b empty).
double mix_batch(const MixOptions& options, uint64_t seed, int64_t epoch, int64_t global_micro,
                 int64_t count, int64_t channels, int64_t height, int64_t width, bool channels_last,
                 std::vector<float>& images, const std::vector<int64_t>& labels,
                 std::vector<int64_t>& labels_b);

}  // namespace convnet

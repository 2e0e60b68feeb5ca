#include <algorithm>
#include <cmath>

#include "layers/softmax_cross_entropy.h"

namespace convnet::ref {

namespace {

// log_softmax of every row of an (N, K) array, shifted by the row maximum.
Array log_softmax(const Array& logits) {
  const int64_t n_batch = logits.shape[0], k_classes = logits.shape[1];
  Array out(logits.shape);
  for (int64_t i = 0; i < n_batch; ++i) {
    double max = logits.at(i, 0);
    for (int64_t k = 1; k < k_classes; ++k) max = std::max(max, logits.at(i, k));
    double sum = 0;
    for (int64_t k = 0; k < k_classes; ++k) sum += std::exp(logits.at(i, k) - max);
    const double log_sum = max + std::log(sum);
    for (int64_t k = 0; k < k_classes; ++k) out.at(i, k) = logits.at(i, k) - log_sum;
  }
  return out;
}

double target(const SoftmaxCrossEntropyOptions& o, int64_t k_classes, int64_t label, int64_t k) {
  return (1 - o.label_smoothing) * (k == label ? 1.0 : 0.0) + o.label_smoothing / k_classes;
}

}  // namespace

double softmax_cross_entropy_forward(const SoftmaxCrossEntropyOptions& o, const Array& logits,
                                     const std::vector<int64_t>& labels) {
  const int64_t n_batch = logits.shape[0], k_classes = logits.shape[1];
  const Array log_p = log_softmax(logits);
  double loss = 0;
  for (int64_t i = 0; i < n_batch; ++i)
    for (int64_t k = 0; k < k_classes; ++k)
      loss -= target(o, k_classes, labels[i], k) * log_p.at(i, k);
  return loss / n_batch;
}

Array softmax_cross_entropy_backward(const SoftmaxCrossEntropyOptions& o, const Array& logits,
                                     const std::vector<int64_t>& labels) {
  const int64_t n_batch = logits.shape[0], k_classes = logits.shape[1];
  const Array log_p = log_softmax(logits);
  Array d(logits.shape);
  for (int64_t i = 0; i < n_batch; ++i)
    for (int64_t k = 0; k < k_classes; ++k)
      d.at(i, k) = (std::exp(log_p.at(i, k)) - target(o, k_classes, labels[i], k)) / n_batch;
  return d;
}

}  // namespace convnet::ref

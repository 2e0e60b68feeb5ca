#include "layers/softmax_cross_entropy.h"

#include <algorithm>
#include <cmath>

#include "layers/cuda/kernel_math.h"

namespace convnet {

SoftmaxCrossEntropy::SoftmaxCrossEntropy(std::string name,
                                         const SoftmaxCrossEntropyOptions& options,
                                         const Shape& input_shape)
    : name_(std::move(name)), options_(options), input_shape_(input_shape) {
  CONVNET_CHECK(input_shape.rank() == 2 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, K) with every extent > 0");
  const double s = options.label_smoothing;
  CONVNET_CHECK(s >= 0 && s < 1, "layer ", name_, ": label_smoothing must be in [0, 1), got ", s);
  labels_.resize(input_shape[0]);
}

std::unique_ptr<SoftmaxCrossEntropy> SoftmaxCrossEntropy::create(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape) {
  return create_on_backend(context, make_softmax_cross_entropy_onednn,
                           CONVNET_GPU_FACTORY(make_softmax_cross_entropy_cuda), std::move(name),
                           options, input_shape);
}

void SoftmaxCrossEntropy::forward_accumulate(const Tensor& logits,
                                             const std::vector<int64_t>& labels) {
  check_labels(logits, labels);
  forward_accumulate_impl(logits);
  forwarded_ = true;
}

SoftmaxCrossEntropy::Metrics SoftmaxCrossEntropy::take_metrics() { return take_metrics_impl(); }

void SoftmaxCrossEntropy::forward_accumulate_impl(const Tensor& logits) {
  const double loss = forward_impl(logits);
  if (std::isfinite(loss))
    metrics_.loss_sum += loss * static_cast<double>(batch());
  else
    ++metrics_.nonfinite;
  metrics_.top1 += count_top_k(logits, labels_, 1);
  metrics_.top5 += count_top_k(logits, labels_, std::min<int64_t>(5, classes()));
}

int64_t count_top_k(const Tensor& logits, const std::vector<int64_t>& labels, int64_t k) {
  const int64_t n = logits.shape()[0], classes = logits.shape()[1];
  const float* x = logits.data<float>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i)
    correct += cuda::math::label_in_top_k(x + i * classes, classes, labels[i], k) ? 1 : 0;
  return correct;
}

SoftmaxCrossEntropy::Metrics SoftmaxCrossEntropy::take_metrics_impl() {
  const Metrics m = metrics_;
  metrics_ = Metrics();
  return m;
}

void SoftmaxCrossEntropy::check_labels(const Tensor& logits, const std::vector<int64_t>& labels) {
  check_tensor(name_, "logits", logits, input_shape_);
  CONVNET_CHECK(static_cast<int64_t>(labels.size()) == batch(), "layer ", name_, ": got ",
                labels.size(), " labels for logits of shape ", input_shape_);
  for (int64_t i = 0; i < batch(); ++i)
    CONVNET_CHECK(labels[i] >= 0 && labels[i] < classes(), "layer ", name_, ": label ", labels[i],
                  " of sample ", i, " is outside [0, ", classes(), ")");
  std::copy(labels.begin(), labels.end(), labels_.begin());
}

double SoftmaxCrossEntropy::forward(const Tensor& logits, const std::vector<int64_t>& labels) {
  check_labels(logits, labels);
  const double loss = forward_impl(logits);
  forwarded_ = true;
  return loss;
}

void SoftmaxCrossEntropy::backward(const Tensor& dlogits, GradMode mode) {
  CONVNET_CHECK(forwarded_, "layer ", name_, ": backward before any forward");
  check_tensor(name_, "logits gradient", dlogits, input_shape_, Strides::any);
  backward_impl(dlogits, mode);
}

}  // namespace convnet

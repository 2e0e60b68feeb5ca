// Softmax cross-entropy loss over K classes, as torch.nn.CrossEntropyLoss
// with reduction='mean' and optional label_smoothing:
//
//   target[i, k] = (1 - s) * (k == labels[i]) + s / K
//   loss = -(1 / N) * sum_i sum_k target[i, k] * log_softmax(logits[i])[k]
//
// Shapes:
//   logits   (N, K)   contiguous
//   labels   N class indices in [0, K), a host std::vector<int64_t> (the
//            dataset's batch labels); an index outside [0, K) is an error
//            naming the label and its sample
//
// forward returns the loss (accumulated in double) and keeps, inside the
// layer, the log-probabilities (N, K) and a copy of the labels; backward
// differentiates that LAST forward, so it needs no arguments but its output:
//
//   dlogits = d(loss)/d(logits) = (softmax(logits) - target) / N
//
// written per mode (see layers/layer.h: overwrite by default). The loss is the
// end of the graph, so d(loss) = 1: to scale the gradient, scale the loss elsewhere.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

// Rows of host logits (N, K) whose label is among the k largest logits
// (ties count against the label; a NaN logit never counts): the rule of the
// training metrics on both backends and of evaluation.
int64_t count_top_k(const Tensor& logits, const std::vector<int64_t>& labels, int64_t k);

struct SoftmaxCrossEntropyOptions {
  double label_smoothing = 0.0;  // s in [0, 1)
};

class SoftmaxCrossEntropy {
 public:
  // Validates the options and builds the backend's primitives for (N, K) logits.
  static std::unique_ptr<SoftmaxCrossEntropy> create(Context& context, std::string name,
                                                     const SoftmaxCrossEntropyOptions& options,
                                                     const Shape& input_shape);
  virtual ~SoftmaxCrossEntropy() = default;

  const std::string& name() const { return name_; }
  const SoftmaxCrossEntropyOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  int64_t batch() const { return input_shape_[0]; }
  int64_t classes() const { return input_shape_[1]; }

  // Mean loss over the batch; keeps what backward needs.
  double forward(const Tensor& logits, const std::vector<int64_t>& labels);
  // dlogits (per mode) = (softmax - target) / N of the last forward.
  void backward(const Tensor& dlogits, GradMode mode = GradMode::overwrite);

  // Training metrics without waiting for the device: forward_accumulate()
  // is forward() that adds the batch's summed loss (N times the mean; a
  // non-finite loss is counted instead), its top-1 and top-5 correct counts
  // (trainer/evaluator.h's rule) to accumulators kept with the loss. On the
  // GPU they stay in device memory, so a step has no host synchronization
  // until take_metrics() returns and resets them (one small copy).
  struct Metrics {
    double loss_sum = 0;
    int64_t top1 = 0, top5 = 0;
    int64_t nonfinite = 0;  // forwards whose loss was inf or NaN
  };
  void forward_accumulate(const Tensor& logits, const std::vector<int64_t>& labels);
  Metrics take_metrics();

 protected:
  SoftmaxCrossEntropy(std::string name, const SoftmaxCrossEntropyOptions& options,
                      const Shape& input_shape);
  // The labels were checked to lie in [0, K) and are kept in labels().
  virtual double forward_impl(const Tensor& logits) = 0;
  virtual void backward_impl(const Tensor& dlogits, GradMode mode) = 0;
  // forward_accumulate without the mean loss (the GPU's: no synchronization);
  // by default forward_impl and host counting over the logits.
  virtual void forward_accumulate_impl(const Tensor& logits);
  virtual Metrics take_metrics_impl();
  const std::vector<int64_t>& labels() const { return labels_; }
  // Validates the logits and labels and keeps the labels.
  void check_labels(const Tensor& logits, const std::vector<int64_t>& labels);

 private:
  std::string name_;
  SoftmaxCrossEntropyOptions options_;
  Shape input_shape_;            // (N, K)
  std::vector<int64_t> labels_;  // (N) labels of the last forward
  bool forwarded_ = false;       // a forward has run, so backward has its state
  Metrics metrics_;              // host accumulators (the default implementation)
};

std::unique_ptr<SoftmaxCrossEntropy> make_softmax_cross_entropy_onednn(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<SoftmaxCrossEntropy> make_softmax_cross_entropy_cuda(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape);

namespace ref {
// The mean loss, with a max-shifted log-sum-exp in double.
double softmax_cross_entropy_forward(const SoftmaxCrossEntropyOptions& options, const Array& logits,
                                     const std::vector<int64_t>& labels);
// d(loss)/d(logits): (softmax - target) / N, shape (N, K).
Array softmax_cross_entropy_backward(const SoftmaxCrossEntropyOptions& options, const Array& logits,
                                     const std::vector<int64_t>& labels);
}  // namespace ref

}  // namespace convnet

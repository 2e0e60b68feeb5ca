// SoftmaxCrossEntropy on oneDNN: a logsoftmax forward primitive over the
// class axis, built once in the constructor, gives log-probabilities without
// overflow or log(0) (it subtracts the row maximum). The loss and gradient
// need only the label of each row, so they are short loops here.
#include <cmath>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/softmax_cross_entropy.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class SoftmaxCrossEntropyOnednn final : public SoftmaxCrossEntropy {
 public:
  SoftmaxCrossEntropyOnednn(Context& context, std::string name,
                            const SoftmaxCrossEntropyOptions& options, const Shape& input_shape)
      : SoftmaxCrossEntropy(std::move(name), options, input_shape), rt_(context.onednn()) {
    onednn_call("building softmax cross-entropy " + this->name(), [&] {
      md_ = memory::desc(input_shape.dims(), memory::data_type::f32, tag::nc);
      dnnl::logsoftmax_forward::desc desc(dnnl::prop_kind::forward_training, md_, /*axis=*/1);
      logsoftmax_ =
          dnnl::logsoftmax_forward(dnnl::logsoftmax_forward::primitive_desc(desc, rt_.engine));
    });
    log_probs_ = Tensor::empty(input_shape, context.allocator());
  }

 private:
  // -sum_k target[k] * log_p[k] with target = (1 - s) * onehot(label) + s / K.
  double forward_impl(const Tensor& logits) override {
    onednn_call("softmax cross-entropy " + name() + " forward", [&] {
      logsoftmax_.execute(rt_.stream, {{DNNL_ARG_SRC, onednn_memory(md_, rt_.engine, logits)},
                                       {DNNL_ARG_DST, onednn_memory(md_, rt_.engine, log_probs_)}});
      rt_.stream.wait();
    });
    const int64_t n_batch = batch(), k_classes = classes();
    const double s = options().label_smoothing;
    const float* log_p = log_probs_.data<float>();
    const std::vector<int64_t>& label = labels();
    double total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int64_t i = 0; i < n_batch; ++i) {
      const float* row = log_p + i * k_classes;
      double row_sum = 0;
      for (int64_t k = 0; k < k_classes; ++k) row_sum += row[k];
      total -= (1 - s) * row[label[i]] + s / k_classes * row_sum;
    }
    return total / n_batch;
  }

  void backward_impl(const Tensor& dlogits, GradMode mode) override {
    const int64_t n_batch = batch(), k_classes = classes();
    const double s = options().label_smoothing;
    const float off_target = static_cast<float>(s / k_classes);
    const float on_target = static_cast<float>(1 - s + s / k_classes);
    const float scale = 1.0f / static_cast<float>(n_batch);
    const float* log_p = log_probs_.data<float>();
    float* d = dlogits.data<float>();
    const int64_t row_stride = dlogits.strides()[0], col_stride = dlogits.strides()[1];
    const std::vector<int64_t>& label = labels();
    const bool accumulate = mode == GradMode::accumulate;
#pragma omp parallel for
    for (int64_t i = 0; i < n_batch; ++i)
      for (int64_t k = 0; k < k_classes; ++k) {
        const float target = k == label[i] ? on_target : off_target;
        const float g = (std::exp(log_p[i * k_classes + k]) - target) * scale;
        float& out = d[i * row_stride + k * col_stride];
        out = accumulate ? out + g : g;
      }
  }

  OnednnRuntime& rt_;
  memory::desc md_;  // (N, K)
  dnnl::logsoftmax_forward logsoftmax_;
  Tensor log_probs_;  // (N, K) log-softmax of the last forward's logits
};

}  // namespace

std::unique_ptr<SoftmaxCrossEntropy> make_softmax_cross_entropy_onednn(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape) {
  return std::make_unique<SoftmaxCrossEntropyOnednn>(context, std::move(name), options,
                                                     input_shape);
}

}  // namespace convnet

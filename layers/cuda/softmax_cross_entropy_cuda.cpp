// SoftmaxCrossEntropy on the GPU: one block per row computes the row's loss
// and log-sum-exp; the mean loss is copied to the host (forward returns it,
// so forward waits for the stream). Labels are copied to the device as int32;
// the logits are copied too, so backward does not depend on the caller
// keeping them.
#include <numeric>

#include "layers/cuda/cudnn_util.h"
#include "layers/softmax_cross_entropy.h"

namespace convnet {
namespace {

class SoftmaxCrossEntropyCuda final : public SoftmaxCrossEntropy {
 public:
  SoftmaxCrossEntropyCuda(Context& context, std::string name,
                          const SoftmaxCrossEntropyOptions& options, const Shape& input_shape)
      : SoftmaxCrossEntropy(std::move(name), options, input_shape),
        stream_(cuda::stream_of(context)),
        labels_(Tensor::empty(Shape{input_shape[0]}, context.allocator())),  // int32 in f32 slots
        row_loss_(Tensor::empty(Shape{input_shape[0]}, context.allocator())),
        log_sum_exp_(Tensor::empty(Shape{input_shape[0]}, context.allocator())),
        logits_(Tensor::empty(input_shape, context.allocator())),
        host_labels_(static_cast<std::size_t>(input_shape[0])),
        host_loss_(static_cast<std::size_t>(input_shape[0])) {}

 private:
  int32_t* device_labels() const { return static_cast<int32_t*>(labels_.raw_data()); }
  float smoothing() const { return static_cast<float>(options().label_smoothing); }

  double forward_impl(const Tensor& logits) override {
    CONVNET_CHECK(logits.is_contiguous(), "layer ", name(), ": GPU logits must be contiguous");
    cuda::copy(logits_, logits, stream_);
    for (std::size_t i = 0; i < host_labels_.size(); ++i)
      host_labels_[i] = static_cast<int32_t>(labels()[i]);
    CONVNET_CUDA(cudaMemcpyAsync(device_labels(), host_labels_.data(),
                                 host_labels_.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                 stream_));
    cuda::softmax_cross_entropy_forward(logits_.data<float>(), device_labels(),
                                        row_loss_.data<float>(), log_sum_exp_.data<float>(),
                                        batch(), classes(), smoothing(), stream_);
    CONVNET_CUDA(cudaMemcpyAsync(host_loss_.data(), row_loss_.raw_data(),
                                 host_loss_.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                 stream_));
    CONVNET_CUDA(cudaStreamSynchronize(stream_));
    double sum = 0.0;
    for (float v : host_loss_) sum += v;
    return sum / static_cast<double>(batch());
  }

  void backward_impl(const Tensor& dlogits, GradMode mode) override {
    CONVNET_CHECK(dlogits.is_contiguous(), "layer ", name(),
                  ": GPU logits gradient must be contiguous");
    cuda::softmax_cross_entropy_backward(logits_.data<float>(), device_labels(),
                                         log_sum_exp_.data<float>(), cuda::device_ptr(dlogits),
                                         mode == GradMode::accumulate, batch(), classes(),
                                         smoothing(), stream_);
  }

  cudaStream_t stream_;
  Tensor labels_;       // (N) int32 in f32-sized slots
  Tensor row_loss_;     // (N)
  Tensor log_sum_exp_;  // (N) of the last forward's rows
  Tensor logits_;       // (N, K) copy of the last forward's logits
  std::vector<int32_t> host_labels_;
  std::vector<float> host_loss_;
};

}  // namespace

std::unique_ptr<SoftmaxCrossEntropy> make_softmax_cross_entropy_cuda(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape) {
  return std::make_unique<SoftmaxCrossEntropyCuda>(context, std::move(name), options, input_shape);
}

}  // namespace convnet

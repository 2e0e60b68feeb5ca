// SoftmaxCrossEntropy on the GPU: one thread per row computes the row's loss
// and log-sum-exp. forward() copies the mean loss to the host (it returns
// it, so it waits for the stream); forward_accumulate() adds the training
// metrics to device accumulators instead and does not wait. Labels are
// copied to the device as int32; the logits are copied too, so backward does
// not depend on the caller keeping them.
// The kernels (contracts in kernels.h) are at the top of this file.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

// One block: the metrics of accumulate_loss_metrics.
__global__ void loss_metrics_kernel(const float* row_loss, const float* logits,
                                    const int32_t* labels, int64_t n, int64_t k, double* metrics) {
  float sum = 0.0f, top1 = 0.0f, top5 = 0.0f, bad = 0.0f;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    const float loss = row_loss[r];
    if (isfinite(loss))
      sum += loss;
    else
      bad += 1.0f;
    const float* row = logits + r * k;
    top1 += math::label_in_top_k(row, k, labels[r], 1) ? 1.0f : 0.0f;
    top5 += math::label_in_top_k(row, k, labels[r], k < 5 ? k : 5) ? 1.0f : 0.0f;
  }
  sum = block_sum(sum);
  top1 = block_sum(top1);
  top5 = block_sum(top5);
  bad = block_sum(bad);
  if (threadIdx.x == 0) {
    metrics[0] += sum;
    metrics[1] += top1;
    metrics[2] += top5;
    metrics[3] += bad > 0.0f ? 1.0 : 0.0;
  }
}

}  // namespace

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, float* row_loss,
                                   float* log_sum_exp, int64_t n, int64_t k, float smoothing,
                                   cudaStream_t stream) {
  for_each("softmax_cross_entropy_forward", n, stream, [=] __device__(int64_t r) {
    math::softmax_cross_entropy_forward(r, logits, labels, row_loss, log_sum_exp, k, smoothing);
  });
}

void softmax_cross_entropy_backward(const float* logits, const int32_t* labels,
                                    const float* log_sum_exp, float* dlogits, bool accumulate,
                                    int64_t n, int64_t k, float smoothing, cudaStream_t stream) {
  for_each("softmax_cross_entropy_backward", n * k, stream, [=] __device__(int64_t i) {
    math::softmax_cross_entropy_backward(i, logits, labels, log_sum_exp, dlogits, accumulate, n, k,
                                         smoothing);
  });
}

void accumulate_loss_metrics(const float* row_loss, const float* logits, const int32_t* labels,
                             int64_t n, int64_t k, double* metrics, cudaStream_t stream) {
  CONVNET_LAUNCH("loss_metrics", loss_metrics_kernel, 1, kThreads, stream, row_loss, logits, labels,
                 n, k, metrics);
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
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
        metrics_(Tensor::empty(Shape{8}, context.allocator())),  // 4 f64 accumulators
        host_loss_(static_cast<std::size_t>(input_shape[0])) {
    CONVNET_CUDA(cudaMemsetAsync(metrics_.raw_data(), 0, 4 * sizeof(double), stream_));
    // Pinned, so that the copy never waits for the stream (a pageable one may).
    CONVNET_CUDA(
        cudaMallocHost(&host_labels_, static_cast<std::size_t>(batch()) * sizeof(int32_t)));
    CONVNET_CUDA(cudaEventCreateWithFlags(&labels_copied_, cudaEventDisableTiming));
  }
  ~SoftmaxCrossEntropyCuda() override {
    cudaEventSynchronize(labels_copied_);
    cudaEventDestroy(labels_copied_);
    cudaFreeHost(host_labels_);
  }

 private:
  int32_t* device_labels() const { return static_cast<int32_t*>(labels_.raw_data()); }
  float smoothing() const { return static_cast<float>(options().label_smoothing); }

  double forward_impl(const Tensor& logits) override {
    launch_forward(logits);
    CONVNET_CUDA(cudaMemcpyAsync(host_loss_.data(), row_loss_.raw_data(),
                                 host_loss_.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                 stream_));
    CONVNET_CUDA(cudaStreamSynchronize(stream_));
    double sum = 0.0;
    for (float v : host_loss_) sum += v;
    return sum / static_cast<double>(batch());
  }

  void forward_accumulate_impl(const Tensor& logits) override {
    launch_forward(logits);
    cuda::accumulate_loss_metrics(row_loss_.data<float>(), logits_.data<float>(), device_labels(),
                                  batch(), classes(), metrics(), stream_);
  }

  Metrics take_metrics_impl() override {
    double m[4];
    CONVNET_CUDA(cudaMemcpyAsync(m, metrics(), sizeof m, cudaMemcpyDeviceToHost, stream_));
    CONVNET_CUDA(cudaMemsetAsync(metrics(), 0, sizeof m, stream_));
    CONVNET_CUDA(cudaStreamSynchronize(stream_));
    Metrics out;
    out.loss_sum = m[0];
    out.top1 = static_cast<int64_t>(m[1]);
    out.top5 = static_cast<int64_t>(m[2]);
    out.nonfinite = static_cast<int64_t>(m[3]);
    return out;
  }

  double* metrics() const { return static_cast<double*>(metrics_.raw_data()); }

  // Copies logits and labels and computes the row losses (no waiting).
  void launch_forward(const Tensor& logits) {
    CONVNET_CHECK(logits.is_contiguous(), "layer ", name(), ": GPU logits must be contiguous");
    cuda::copy(logits_, logits, stream_);
    // The previous copy out of the pinned labels is done (normally long ago).
    CONVNET_CUDA(cudaEventSynchronize(labels_copied_));
    for (int64_t i = 0; i < batch(); ++i) host_labels_[i] = static_cast<int32_t>(labels()[i]);
    CONVNET_CUDA(cudaMemcpyAsync(device_labels(), host_labels_,
                                 static_cast<std::size_t>(batch()) * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream_));
    CONVNET_CUDA(cudaEventRecord(labels_copied_, stream_));
    cuda::softmax_cross_entropy_forward(logits_.data<float>(), device_labels(),
                                        row_loss_.data<float>(), log_sum_exp_.data<float>(),
                                        batch(), classes(), smoothing(), stream_);
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
  Tensor metrics_;      // f64 loss sum, top-1, top-5, non-finite forwards (forward_accumulate)
  int32_t* host_labels_ = nullptr;  // (N) pinned
  cudaEvent_t labels_copied_ = nullptr;
  std::vector<float> host_loss_;
};

}  // namespace

std::unique_ptr<SoftmaxCrossEntropy> make_softmax_cross_entropy_cuda(
    Context& context, std::string name, const SoftmaxCrossEntropyOptions& options,
    const Shape& input_shape) {
  return std::make_unique<SoftmaxCrossEntropyCuda>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST

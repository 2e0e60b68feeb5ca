#include "core/input_feed.h"

#include <cstring>

#include "core/error.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

#ifdef CONVNET_HAVE_CUDA
// Pinned host memory, a copy stream and two events: each released by
// release(), from the destructor or from a constructor that failed midway.
struct InputFeed::Gpu {
  Gpu(Context& context, const Tensor& input)
      : compute(context.gpu().stream),
        staging(Tensor::empty(input.shape(), context.allocator(), DType::f32, input.layout())),
        bytes(static_cast<std::size_t>(input.numel()) * sizeof(float)) {
    try {
      CONVNET_CUDA(cudaSetDevice(context.gpu().device));  // the stream and events' device
      CONVNET_CUDA(cudaMallocHost(&pinned, bytes));
      CONVNET_CUDA(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
      CONVNET_CUDA(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
      CONVNET_CUDA(cudaEventCreateWithFlags(&consumed, cudaEventDisableTiming));
    } catch (...) {
      release();
      throw;
    }
  }
  ~Gpu() { release(); }
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  void release() noexcept {
    if (copy) cudaStreamSynchronize(copy);
    if (consumed) cudaEventDestroy(consumed);
    if (copied) cudaEventDestroy(copied);
    if (copy) cudaStreamDestroy(copy);
    if (pinned) cudaFreeHost(pinned);
    consumed = copied = nullptr;
    copy = nullptr;
    pinned = nullptr;
  }

  cudaStream_t compute = nullptr, copy = nullptr;
  Tensor staging;  // the input's shape and layout, device
  std::size_t bytes = 0;
  void* pinned = nullptr;
  cudaEvent_t copied = nullptr;    // the staged batch reached `staging`
  cudaEvent_t consumed = nullptr;  // `staging` was copied into the input
};
#else
struct InputFeed::Gpu {};
#endif

InputFeed::InputFeed(Context& context, const Tensor& input) : input_(input) {
  CONVNET_CHECK(input.dtype() == DType::f32 && input.is_dense(), "the net input must be dense f32");
#ifdef CONVNET_HAVE_CUDA
  if (input.device() == Device::cuda) gpu_ = std::make_unique<Gpu>(context, input);
#else
  (void)context;
#endif
}

InputFeed::~InputFeed() = default;

void InputFeed::stage(const std::vector<float>& images) {
  CONVNET_CHECK(static_cast<int64_t>(images.size()) == input_.numel(), "a batch of ", images.size(),
                " values for a net input of shape ", input_.shape());
#ifdef CONVNET_HAVE_CUDA
  if (!gpu_) return;
  // The pinned buffer is free once the previous transfer is done (long ago,
  // normally); the staging buffer once the compute stream has copied it out.
  CONVNET_CUDA(cudaEventSynchronize(gpu_->copied));
  std::memcpy(gpu_->pinned, images.data(), gpu_->bytes);
  CONVNET_CUDA(cudaStreamWaitEvent(gpu_->copy, gpu_->consumed, 0));
  CONVNET_CUDA(cudaMemcpyAsync(gpu_->staging.raw_data(), gpu_->pinned, gpu_->bytes,
                               cudaMemcpyHostToDevice, gpu_->copy));
  CONVNET_CUDA(cudaEventRecord(gpu_->copied, gpu_->copy));
#endif
}

void InputFeed::commit(const std::vector<float>& images) {
  CONVNET_CHECK(static_cast<int64_t>(images.size()) == input_.numel(), "a batch of ", images.size(),
                " values for a net input of shape ", input_.shape());
#ifdef CONVNET_HAVE_CUDA
  if (gpu_) {
    CONVNET_CUDA(cudaStreamWaitEvent(gpu_->compute, gpu_->copied, 0));
    CONVNET_CUDA(cudaMemcpyAsync(input_.raw_data(), gpu_->staging.raw_data(), gpu_->bytes,
                                 cudaMemcpyDeviceToDevice, gpu_->compute));
    CONVNET_CUDA(cudaEventRecord(gpu_->consumed, gpu_->compute));
    return;
  }
#endif
  copy_from_host(input_, images.data());
}

}  // namespace convnet

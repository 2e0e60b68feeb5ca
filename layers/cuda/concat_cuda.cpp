// Concat on the GPU: strided copies of each input into its channel slice of
// the output (tensor_kernels.cu), and back for the gradients.
#include "layers/concat.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

using cuda::act;

class ConcatCuda final : public Concat {
 public:
  ConcatCuda(Context& context, std::string name, const ConcatOptions& options,
             const std::vector<Shape>& input_shapes)
      : Concat(std::move(name), options, input_shapes), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), options.layout);
    CONVNET_CHECK(options.layout == Layout::nchw, "layer ", this->name(),
                  ": the GPU concatenates nchw tensors only");
  }

 private:
  void forward_impl(const std::vector<Tensor>& inputs, const Tensor& y) override {
    int64_t offset = 0;
    for (const Tensor& x : inputs) {
      const Tensor slice = y.slice(1, offset, offset + x.dim(1));
      cuda::copy_tensor(slice, x, false, stream_);
      offset += x.dim(1);
    }
  }
  void backward_impl(const Tensor& dy, const std::vector<Tensor>& dinputs,
                     const std::vector<GradMode>& modes) override {
    int64_t offset = 0;
    for (std::size_t k = 0; k < dinputs.size(); ++k) {
      const int64_t channels = input_shapes()[k][1];
      const Tensor slice = dy.slice(1, offset, offset + channels);
      offset += channels;
      if (!dinputs[k].defined()) continue;
      cuda::copy_tensor(dinputs[k], slice, modes[k] == GradMode::accumulate, stream_);
    }
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<Concat> make_concat_cuda(Context& context, std::string name,
                                         const ConcatOptions& options,
                                         const std::vector<Shape>& input_shapes) {
  return std::make_unique<ConcatCuda>(context, std::move(name), options, input_shapes);
}

}  // namespace convnet

// PadShortcut on the GPU (nchw or nhwc): zeros, then one strided copy
// between x's channels of y and x[:, :, ::stride, ::stride] as a strided
// view (tensor_kernels.cu).
#include "layers/cuda/cudnn_util.h"
#include "layers/pad_shortcut.h"

namespace convnet {
namespace {

class PadShortcutCuda final : public PadShortcut {
 public:
  PadShortcutCuda(Context& context, std::string name, const Shape& in, const Shape& out,
                  int64_t stride, Layout layout)
      : PadShortcut(std::move(name), in, out, stride, layout), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), layout);
  }

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    y.set_zero();
    cuda::copy_tensor(x_channels(y), subsampled(x), false, stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    if (dx_mode == GradMode::overwrite) dx.set_zero();
    cuda::copy_tensor(subsampled(dx), x_channels(dy), true, stream_);
  }

  // x[:, :, ::stride, ::stride] as a strided view.
  Tensor subsampled(const Tensor& x) const {
    const std::vector<int64_t>& s = x.strides();
    const int64_t k = stride();
    return Tensor::wrap(
        x.raw_data(),
        Shape{input_shape()[0], input_shape()[1], output_shape()[2], output_shape()[3]}, x.dtype(),
        x.device(), {s[0], s[1], s[2] * k, s[3] * k});
  }
  // The channels of y that hold x.
  Tensor x_channels(const Tensor& y) const { return y.slice(1, pad(), pad() + input_shape()[1]); }

  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<PadShortcut> make_pad_shortcut_cuda(Context& context, std::string name,
                                                    const Shape& input_shape,
                                                    const Shape& output_shape, int64_t stride,
                                                    Layout layout) {
  return std::make_unique<PadShortcutCuda>(context, std::move(name), input_shape, output_shape,
                                           stride, layout);
}

}  // namespace convnet

// Times one convolution layer's training work (forward, backward data,
// backward weights) at a given shape on the CPU backend, the same work as
// bench/torch_conv_bench.py does in PyTorch.
//
// usage: conv_bench N C_IN C_OUT HW KERNEL STRIDE ITERS
// prints: conv N C_in C_out HW K S  median_ms_per_iter
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "layers/conv2d.h"

using namespace convnet;

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: conv_bench N C_IN C_OUT HW KERNEL STRIDE ITERS\n");
    return 2;
  }
  const int64_t n = std::atol(argv[1]), c_in = std::atol(argv[2]), c_out = std::atol(argv[3]),
                hw = std::atol(argv[4]), k = std::atol(argv[5]), s = std::atol(argv[6]);
  const int iters = std::atoi(argv[7]);
  Context context;
  const Conv2dOptions options{
      .in_channels = c_in, .out_channels = c_out, .kernel = k, .stride = s, .padding = k / 2};
  auto conv = Conv2d::create(context, "conv", options, Shape{n, c_in, hw, hw});
  auto random = [&](const Shape& shape) {
    Tensor t = Tensor::empty(shape, context.allocator());
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1, 1);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
    return t;
  };
  Tensor x = random(conv->input_shape()), w = random(conv->weight_shape());
  Tensor y = random(conv->output_shape()), dy = random(conv->output_shape());
  Tensor dx = random(conv->input_shape()), dw = random(conv->weight_shape());
  std::vector<double> ms;
  for (int i = 0; i < iters + 1; ++i) {
    const auto start = std::chrono::steady_clock::now();
    conv->forward(x, w, Tensor(), y);
    conv->backward(x, w, dy, dx, GradMode::overwrite, dw, Tensor());
    const auto end = std::chrono::steady_clock::now();
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("conv %ld %ld %ld %ld %ld %ld %.3f\n", n, c_in, c_out, hw, k, s, ms[ms.size() / 2]);
  return 0;
}

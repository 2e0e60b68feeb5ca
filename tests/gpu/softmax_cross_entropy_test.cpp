// SoftmaxCrossEntropy on the GPU against the double-precision reference
// (loss and gradient with label smoothing), and its device-side training
// metrics against the CPU layer's (the same counting rule, count_top_k).
#include "layers/softmax_cross_entropy.h"

#include <limits>

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuSoftmaxCrossEntropy = GpuTest;

TEST_F(GpuSoftmaxCrossEntropy, WithLabelSmoothing) {
  const Shape in{6, 10};
  SoftmaxCrossEntropyOptions o;
  o.label_smoothing = 0.1;
  auto g = SoftmaxCrossEntropy::create(gpu(), "loss", o, in);
  const Tensor z = random(in, -4.0, 4.0), dz = random(in);
  const std::vector<int64_t> labels{0, 9, 3, 3, 7, 1};
  const double loss = ref::softmax_cross_entropy_forward(o, ref_of(z), labels);
  EXPECT_NEAR(g->forward(upload(z), labels), loss, 1e-5 * std::max(1.0, loss));
  Tensor gdz = upload(dz);
  g->backward(gdz, GradMode::accumulate);
  EXPECT_TRUE(
      close(gdz, plus(ref_of(dz), ref::softmax_cross_entropy_backward(o, ref_of(z), labels))));
}

// forward_accumulate keeps the training metrics on the device; they equal
// the CPU's (a non-finite forward counted, not summed).
TEST_F(GpuSoftmaxCrossEntropy, TrainingMetricsMatchCpu) {
  const Shape in{300, 10};  // more rows than the metrics kernel's block
  auto c = SoftmaxCrossEntropy::create(cpu(), "loss", {}, in);
  auto g = SoftmaxCrossEntropy::create(gpu(), "loss", {}, in);
  Tensor z = random(in, -4.0, 4.0);
  std::vector<int64_t> labels(300);
  for (int i = 0; i < 300; ++i) labels[i] = (i * 7) % 10;
  for (int k = 0; k < 2; ++k) {
    c->forward_accumulate(z, labels);
    g->forward_accumulate(upload(z), labels);
  }
  z.data<float>()[42] = std::numeric_limits<float>::infinity();
  c->forward_accumulate(z, labels);
  g->forward_accumulate(upload(z), labels);
  const SoftmaxCrossEntropy::Metrics mc = c->take_metrics(), mg = g->take_metrics();
  EXPECT_NEAR(mg.loss_sum, mc.loss_sum, 1e-5 * mc.loss_sum);
  EXPECT_EQ(mg.top1, mc.top1);
  EXPECT_EQ(mg.top5, mc.top5);
  EXPECT_EQ(mg.nonfinite, 1);
  EXPECT_EQ(mc.nonfinite, 1);
  EXPECT_EQ(g->take_metrics().top1, 0);  // reset
}

}  // namespace
}  // namespace convnet::testing

// MaxPool2d and AvgPool2d on the GPU against the double-precision
// reference, in nchw (with guards around the outputs: no write outside a
// tensor) and nhwc.
#include "layers/avg_pool2d.h"
#include "layers/max_pool2d.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuPool = GpuTest;

MaxPool2dOptions max_pool_3x3_stride2(Layout layout) {
  MaxPool2dOptions o;
  o.kernel = 3;
  o.stride = 2;
  o.padding = 1;
  o.layout = layout;
  return o;
}

TEST_F(GpuPool, MaxPool3x3Stride2) {
  for (Layout layout : {Layout::nchw, Layout::nhwc}) {
    SCOPED_TRACE(to_string(layout));
    const Shape in{2, 8, 11, 10};
    const MaxPool2dOptions o = max_pool_3x3_stride2(layout);
    auto g = MaxPool2d::create(gpu(), "pool", o, in);
    const Tensor x = random(in), dy = random(g->output_shape()), dx = random(in);
    const ref::Array xr = ref_of(x);
    Tensor gy = layout == Layout::nchw ? guarded_zeros(g->output_shape())
                                       : device_zeros(g->output_shape(), layout);
    g->forward(Mode::training, upload(x, layout), gy);
    EXPECT_TRUE(close(gy, ref::max_pool2d_forward(o, xr)));
    Tensor gdx = upload(dx, layout);
    g->backward(upload(dy, layout), gdx, GradMode::accumulate);
    EXPECT_TRUE(close(gdx, plus(ref_of(dx), ref::max_pool2d_backward(o, xr, ref_of(dy)))));
  }
  EXPECT_TRUE(guards_intact());
}

TEST_F(GpuPool, AvgPoolBothPaddingModes) {
  for (bool include_pad : {true, false}) {
    SCOPED_TRACE(include_pad ? "count_include_pad" : "padding excluded");
    const Shape in{2, 8, 9, 9};
    AvgPool2dOptions o;
    o.kernel = 3;
    o.stride = 2;
    o.padding = 1;
    o.count_include_pad = include_pad;
    auto g = AvgPool2d::create(gpu(), "pool", o, in);
    const Tensor x = random(in), dy = random(g->output_shape());
    Tensor gy = guarded_zeros(g->output_shape()), gdx = guarded_zeros(in);
    g->forward(upload(x), gy);
    EXPECT_TRUE(close(gy, ref::avg_pool2d_forward(o, ref_of(x))));
    g->backward(upload(dy), gdx, GradMode::overwrite);
    EXPECT_TRUE(close(gdx, ref::avg_pool2d_backward(o, in, ref_of(dy))));
  }
  EXPECT_TRUE(guards_intact());
}

}  // namespace
}  // namespace convnet::testing

// InputFeed on the GPU: a batch staged while the previous one is the input
// does not disturb it, and commit() makes it the input (on the compute
// stream, after the copy stream's transfer).
#include "core/input_feed.h"

#include "core/error.h"
#include "layers/cuda/kernels.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

class GpuInputFeed : public GpuTest {
 protected:
  // The values in storage order (the feed copies memory, not logical elements).
  std::vector<float> stored(const Tensor& device) {
    const Tensor host = download(device);
    const float* p = static_cast<const float*>(host.raw_data());
    return std::vector<float>(p, p + host.numel());
  }
};

TEST_F(GpuInputFeed, StagedBatchesBecomeTheInputInOrder) {
  const Shape shape{4, 3, 8, 8};
  Tensor input = device_zeros(shape, Layout::nhwc);
  InputFeed feed(gpu(), input);
  std::vector<float> first(static_cast<std::size_t>(shape.numel())), second(first.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    first[i] = static_cast<float>(i);
    second[i] = -static_cast<float>(i) - 1.0f;
  }
  feed.stage(first);
  feed.commit(first);
  feed.stage(second);  // in flight while `first` is the input
  EXPECT_EQ(stored(input), first);
  feed.commit(second);
  EXPECT_EQ(stored(input), second);
  EXPECT_THROW(feed.stage(std::vector<float>(3)), Error);
}

// The staging buffer is reused only after the compute stream has copied it
// out: with the compute stream busy (about 10 ms of work queued before the
// commit), the next stage() must not overwrite the batch being committed.
TEST_F(GpuInputFeed, StagingWaitsForABusyComputeStream) {
  const Shape shape{8, 3, 32, 32};
  Tensor input = device_zeros(shape);
  InputFeed feed(gpu(), input);
  std::vector<float> first(static_cast<std::size_t>(shape.numel()), 1.0f),
      second(first.size(), 2.0f);
  Tensor busy = device_zeros(Shape{int64_t{1} << 27});
  feed.stage(first);
  for (int k = 0; k < 20; ++k) cuda::scale(busy.data<float>(), busy.numel(), 1.0f, stream());
  feed.commit(first);  // queued behind the busy work
  feed.stage(second);  // must wait for that commit's copy before touching the staging buffer
  EXPECT_EQ(stored(input), first);
  feed.commit(second);
  EXPECT_EQ(stored(input), second);
}

}  // namespace
}  // namespace convnet::testing

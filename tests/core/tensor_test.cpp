#include "core/tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "core/context.h"
#include "core/error.h"

namespace convnet {
namespace {

TEST(Tensor, OwningTensorIsContiguousAndFreedWithLastReference) {
  CpuAllocator allocator;
  {
    Tensor t = Tensor::zeros(Shape{2, 3, 4, 5}, allocator);
    EXPECT_TRUE(t.owns_storage());
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.strides(), (std::vector<int64_t>{60, 20, 5, 1}));
    EXPECT_EQ(allocator.bytes_in_use(), 120u * 4);
    Tensor view = t.slice(1, 1, 3);
    t = Tensor();
    EXPECT_EQ(allocator.bytes_in_use(), 120u * 4) << "a view keeps its storage alive";
    view.fill(1.0f);
  }
  EXPECT_EQ(allocator.bytes_in_use(), 0u);
}

TEST(Tensor, ChannelSliceIsAStridedViewIntoTheParent) {
  CpuAllocator allocator;
  Tensor t = Tensor::zeros(Shape{2, 4, 2, 2}, allocator);
  Tensor middle = t.slice(1, 1, 3);
  EXPECT_EQ(middle.shape(), (Shape{2, 2, 2, 2}));
  EXPECT_FALSE(middle.is_contiguous());
  middle.fill(7.0f);
  EXPECT_EQ(t.at({0, 0, 0, 0}), 0.0f);
  EXPECT_EQ(t.at({0, 1, 1, 1}), 7.0f);
  EXPECT_EQ(t.at({1, 2, 0, 1}), 7.0f);
  EXPECT_EQ(t.at({1, 3, 0, 0}), 0.0f);
  EXPECT_EQ(middle.at({1, 0, 0, 0}), 7.0f);
  // copy_from between different layouts goes by logical index.
  Tensor dense = Tensor::zeros(Shape{2, 2, 2, 2}, allocator);
  dense.at({1, 1, 1, 1}) = 3.0f;
  middle.copy_from(dense);
  EXPECT_EQ(t.at({1, 2, 1, 1}), 3.0f);
  EXPECT_EQ(t.at({1, 1, 1, 1}), 0.0f);
}

TEST(Tensor, WrapDoesNotOwn) {
  std::vector<float> buffer(6, 2.0f);
  Tensor t = Tensor::wrap(buffer.data(), Shape{2, 3});
  EXPECT_FALSE(t.owns_storage());
  EXPECT_EQ(t.at({1, 2}), 2.0f);
  t.reshape(Shape{3, 2}).at({2, 1}) = 5.0f;
  EXPECT_EQ(buffer[5], 5.0f);
}

TEST(Tensor, BadShapesAndIndicesThrow) {
  CpuAllocator allocator;
  EXPECT_THROW(Tensor::empty(Shape{2, 0, 3}, allocator), Error);
  EXPECT_THROW(Tensor::empty(Shape{-1, 3}, allocator), Error);
  Tensor t = Tensor::zeros(Shape{2, 3}, allocator);
  EXPECT_THROW(t.reshape(Shape{4, 2}), Error);
  EXPECT_THROW(t.slice(1, 2, 2), Error);
  EXPECT_THROW(t.at({2, 0}), Error);
  EXPECT_THROW(t.slice(1, 0, 2).reshape(Shape{4}), Error) << "non-contiguous reshape";
}

// nchw8c with C = 12: two blocks per image, lanes 4..7 of the second are
// padding, allocated, zero, and skipped by element access.
TEST(Tensor, BlockedTensorPadsItsLastChannelBlockWithZeros) {
  CpuAllocator allocator;
  const Shape shape{2, 12, 2, 3};
  Tensor t = Tensor::empty(shape, allocator, DType::f32, Layout::nchw8c);
  EXPECT_EQ(t.storage_numel(), 2 * 16 * 6);
  EXPECT_EQ(allocator.bytes_in_use(), 2u * 16 * 6 * 4);
  EXPECT_TRUE(t.has_padding());
  // Poisoned storage (as reused memory would be): fill writes the lanes too.
  const auto poison = [](const Tensor& x) {
    std::fill_n(x.data<float>(), x.storage_numel(), std::numeric_limits<float>::quiet_NaN());
  };
  poison(t);
  t.fill(2.0f);
  const float* raw = t.data<float>();
  int64_t twos = 0, zeros = 0;
  for (int64_t i = 0; i < t.storage_numel(); ++i) (raw[i] == 2.0f ? twos : zeros) += 1;
  EXPECT_EQ(twos, shape.numel());
  EXPECT_EQ(zeros, 2 * 4 * 6) << "padding lanes";
  // (n, c, y, x) = (1, 11, 1, 2): image 1, block 1, pixel 5, lane 3.
  t.at({1, 11, 1, 2}) = 5.0f;
  EXPECT_EQ(raw[96 + 48 + 5 * 8 + 3], 5.0f);
  Tensor second = t.slice(0, 1, 2);
  EXPECT_EQ(second.data<float>(), raw + 96);
  EXPECT_EQ(second.at({0, 11, 1, 2}), 5.0f);
  // copy_from a plain tensor goes by logical index and keeps the lanes zero.
  Tensor plain = Tensor::zeros(shape, allocator);
  plain.at({0, 9, 0, 1}) = 7.0f;
  Tensor blocked = Tensor::empty(shape, allocator, DType::f32, Layout::nchw8c);
  poison(blocked);
  blocked.copy_from(plain);
  EXPECT_EQ(blocked.at({0, 9, 0, 1}), 7.0f);
  EXPECT_EQ(blocked.to_vector(), plain.to_vector());
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t lane = 4; lane < 8; ++lane)
      EXPECT_EQ(blocked.data<float>()[48 + p * 8 + lane], 0.0f);
}

// nchw16c with C = 20: two blocks of 16 per image, lanes 4..15 of the second
// are padding; element (n, c, y, x) lies at n * 32HW + (c / 16) * 16HW + 16(yW + x) + c % 16.
TEST(Tensor, SixteenChannelBlocksPadAndIndexLikeEight) {
  CpuAllocator allocator;
  const Shape shape{2, 20, 2, 3};
  Tensor t = Tensor::empty(shape, allocator, DType::f32, Layout::nchw16c);
  EXPECT_EQ(t.storage_numel(), 2 * 32 * 6);
  EXPECT_EQ(storage_numel(Shape{2, 32, 2, 3}, Layout::nchw16c), 2 * 32 * 6);
  EXPECT_EQ(padded_channels(20, Layout::nchw8c), 24);
  EXPECT_EQ(padded_channels(20, Layout::nchw16c), 32);
  EXPECT_TRUE(t.has_padding());
  std::fill_n(t.data<float>(), t.storage_numel(), std::numeric_limits<float>::quiet_NaN());
  t.fill(1.0f);
  const float* raw = t.data<float>();
  int64_t ones = 0;
  for (int64_t i = 0; i < t.storage_numel(); ++i) ones += raw[i] == 1.0f ? 1 : 0;
  EXPECT_EQ(ones, shape.numel());
  t.at({1, 19, 1, 2}) = 5.0f;  // image 1, block 1, pixel 5, lane 3
  EXPECT_EQ(raw[192 + 96 + 5 * 16 + 3], 5.0f);
  EXPECT_EQ(t.slice(0, 1, 2).data<float>(), raw + 192);
  Tensor eight = Tensor::empty(shape, allocator, DType::f32, Layout::nchw8c);
  eight.copy_from(t);
  EXPECT_EQ(eight.to_vector(), t.to_vector());
  EXPECT_FALSE(
      Tensor::empty(Shape{1, 32, 2, 2}, allocator, DType::f32, Layout::nchw16c).has_padding());
  EXPECT_THROW(Tensor::empty(Shape{2, 20}, allocator, DType::f32, Layout::nchw16c), Error);
}

TEST(Tensor, ReservedLowPrecisionTypesAreStorageOnly) {
  CpuAllocator allocator;
  Tensor t = Tensor::empty(Shape{4}, allocator, DType::bf16);
  EXPECT_EQ(allocator.bytes_in_use(), 8u);
  EXPECT_THROW(t.data<float>(), Error);
}

// The message a check throws: the rank and the user's terms; the source
// location and expression only under CONVNET_DEBUG=1 or without a message.
std::string failure_message(bool with_message) {
  try {
    const int channels = 5;
    if (with_message) CONVNET_CHECK(channels == 4, "layer conv1: got ", channels, " channels");
    CONVNET_CHECK(channels == 4);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ErrorCheck, MessageLeadsWithTheUsersTermsAndTheRank) {
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  EXPECT_EQ(failure_message(true), "[rank 3] layer conv1: got 5 channels");
  const std::string bare = failure_message(false);
  EXPECT_NE(bare.find("tensor_test.cpp:"), std::string::npos) << bare;
  EXPECT_NE(bare.find("channels == 4"), std::string::npos) << bare;
  setenv("CONVNET_DEBUG", "1", 1);
  const std::string debug = failure_message(true);
  EXPECT_EQ(debug.rfind("[rank 3] ", 0), 0u) << debug;
  EXPECT_NE(debug.find("tensor_test.cpp:"), std::string::npos) << debug;
  EXPECT_NE(debug.find("check failed: channels == 4: layer conv1: got 5 channels"),
            std::string::npos)
      << debug;
  unsetenv("CONVNET_DEBUG");
  unsetenv("OMPI_COMM_WORLD_RANK");
  EXPECT_EQ(launcher_rank(), -1);
}

TEST(Context, ExplicitThreadsAndBackend) {
  Context context({.backend = Backend::cpu, .num_threads = 1});
  EXPECT_EQ(context.num_threads(), 1);
  EXPECT_EQ(context.backend(), Backend::cpu);
  EXPECT_NO_THROW(context.onednn());
  EXPECT_FALSE(find_named<Backend>("tpu").has_value());
  EXPECT_THROW(Context({.backend = Backend::cpu, .num_threads = -2}), Error);
}

}  // namespace
}  // namespace convnet

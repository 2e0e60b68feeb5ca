// --layout and --precision resolve to what a rank's Context and model run.
#include "comm/device_selection.h"

#include <gtest/gtest.h>

#include <string>

#include "comm/single_process_communicator.h"
#include "core/onednn.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

TEST(DeviceSelection, CpuLayoutAutoIsTheBlockTheCpuPrefers) {
  const Layout preferred = cpu_preferred_blocked_layout();
  EXPECT_TRUE(preferred == Layout::nchw8c || preferred == Layout::nchw16c) << preferred;
  EXPECT_EQ(resolve_layout(std::nullopt, Backend::cpu, Precision::fp32), preferred);
  for (const Layout layout : {Layout::nchw, Layout::nchw8c, Layout::nchw16c, Layout::nhwc})
    EXPECT_EQ(resolve_layout(layout, Backend::cpu, Precision::fp32), layout);
}

// bf16: channels-last where oneDNN runs AMX kernels, else the block of its
// avx512_bf16 kernels; without bf16 the f32 block (the Context then refuses).
TEST(DeviceSelection, CpuLayoutAutoForBf16IsWhatItsKernelsRead) {
  const Layout bf16 = resolve_layout(std::nullopt, Backend::cpu, Precision::bf16);
  EXPECT_EQ(bf16, cpu_preferred_layout(DType::bf16));
  if (cpu_has_bf16()) {
    EXPECT_TRUE(bf16 == Layout::nhwc || bf16 == Layout::nchw16c) << bf16;
  } else {
    EXPECT_EQ(bf16, cpu_preferred_blocked_layout());
  }
}

TEST(DeviceSelection, GpuLayoutAutoIsChannelsLastForMixedPrecision) {
  EXPECT_EQ(resolve_layout(std::nullopt, Backend::cuda, Precision::fp32), Layout::nchw);
  EXPECT_EQ(resolve_layout(std::nullopt, Backend::cuda, Precision::tf32), Layout::nchw);
  EXPECT_EQ(resolve_layout(std::nullopt, Backend::cuda, Precision::bf16), Layout::nhwc);
  EXPECT_EQ(resolve_layout(std::nullopt, Backend::cuda, Precision::fp16), Layout::nhwc);
  EXPECT_EQ(resolve_layout(Layout::nchw, Backend::cuda, Precision::fp16), Layout::nchw);
}

TEST(DeviceSelection, ContextGetsTheChosenBlock) {
  SingleProcessCommunicator communicator;
  for (Layout block : {Layout::nchw8c, Layout::nchw16c}) {
    const ContextOptions options =
        context_options_for_rank(Backend::cpu, 1, Precision::fp32, block, communicator);
    EXPECT_EQ(options.blocked_layout, block);
    EXPECT_EQ(Context(options).blocked_layout(), block);
  }
  const ContextOptions plain =
      context_options_for_rank(Backend::cpu, 1, Precision::fp32, Layout::nchw, communicator);
  EXPECT_FALSE(plain.blocked_layout.has_value());
  EXPECT_EQ(Context(plain).blocked_layout(), cpu_preferred_blocked_layout());
  EXPECT_TRUE(Context(plain).blocked_layout_is_native());
}

TEST(DeviceSelection, LayoutOrPrecisionOfTheOtherDeviceIsAnError) {
  EXPECT_TRUE(testing::throws_error_with(
      [] { resolve_layout(Layout::nchw16c, Backend::cuda, Precision::fp32); },
      "--layout nchw16c is a CPU layout"));
  SingleProcessCommunicator communicator;
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        context_options_for_rank(Backend::cpu, 1, Precision::fp16, Layout::nchw, communicator);
      },
      "--precision fp16 needs --device cuda"));
}

}  // namespace
}  // namespace convnet

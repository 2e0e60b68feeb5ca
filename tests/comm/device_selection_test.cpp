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
  const std::string preferred = to_string(cpu_preferred_blocked_layout());
  EXPECT_TRUE(preferred == "nchw8c" || preferred == "nchw16c") << preferred;
  EXPECT_EQ(resolve_layout("auto", Backend::cpu, "fp32"), preferred);
  for (const std::string layout : {"nchw", "nchw8c", "nchw16c"})
    EXPECT_EQ(resolve_layout(layout, Backend::cpu, "fp32"), layout);
  EXPECT_TRUE(runs_blocked("nchw16c") && runs_blocked("nchw8c") && !runs_blocked("nchw"));
}

TEST(DeviceSelection, ContextGetsTheChosenBlock) {
  SingleProcessCommunicator communicator;
  for (Layout block : {Layout::nchw8c, Layout::nchw16c}) {
    const ContextOptions options =
        context_options_for_rank(Backend::cpu, 1, "fp32", to_string(block), communicator);
    EXPECT_EQ(options.blocked_layout, block);
    EXPECT_EQ(Context(options).blocked_layout(), block);
  }
  const ContextOptions plain =
      context_options_for_rank(Backend::cpu, 1, "fp32", "nchw", communicator);
  EXPECT_FALSE(plain.blocked_layout.has_value());
  EXPECT_EQ(Context(plain).blocked_layout(), cpu_preferred_blocked_layout());
  EXPECT_TRUE(Context(plain).blocked_layout_is_native());
}

TEST(DeviceSelection, LayoutOfTheOtherDeviceOrUnknownIsAnError) {
  EXPECT_TRUE(testing::throws_error_with([] { resolve_layout("nchw16c", Backend::cuda, "fp32"); },
                                         "--layout nchw16c is a CPU layout"));
  EXPECT_TRUE(testing::throws_error_with([] { resolve_layout("nhwc", Backend::cpu, "fp32"); },
                                         "--layout nhwc needs --device cuda"));
  EXPECT_TRUE(testing::throws_error_with(
      [] { resolve_layout("nchw4c", Backend::cpu, "fp32"); },
      "--layout must be auto, nchw, nhwc (GPU), nchw8c or nchw16c (CPU), got 'nchw4c'"));
}

}  // namespace
}  // namespace convnet

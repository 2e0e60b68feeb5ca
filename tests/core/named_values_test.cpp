// Named enums (core/named_values.h): one table gives names, parsing and messages.
#include "core/named_values.h"

#include <gtest/gtest.h>

#include <sstream>

#include "core/context.h"
#include "core/tensor.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

TEST(NamedValues, NamesAndValuesRoundTrip) {
  for (const auto& [value, name] : NamedValues<Layout>::table) {
    EXPECT_STREQ(name_of(value), name);
    EXPECT_EQ(find_named<Layout>(name), value);
  }
  EXPECT_EQ(to_string(Layout::nchw16c), "nchw16c");
  EXPECT_EQ(to_string(Backend::cuda), "cuda");
  EXPECT_FALSE(find_named<Backend>("tpu").has_value());
  EXPECT_FALSE(find_named<Backend>("CPU").has_value()) << "names are exact";
}

TEST(NamedValues, AutoIsTheEmptyOptional) {
  EXPECT_EQ(name_of(std::optional<Layout>()), "auto");
  EXPECT_EQ(name_of(std::optional<Layout>(Layout::nhwc)), "nhwc");
  std::ostringstream text;
  text << std::optional<Backend>() << ' ' << Backend::cpu << ' ' << std::optional(Layout::nchw);
  EXPECT_EQ(text.str(), "auto cpu nchw");
}

TEST(NamedValues, MessagesListEveryAcceptedName) {
  EXPECT_EQ(accepted_names<Backend>(), "cpu or cuda");
  EXPECT_EQ(accepted_names<Layout>(true), "auto, nchw, nchw8c, nchw16c or nhwc");
  EXPECT_EQ(parse_named<Backend>("cuda", "--device"), Backend::cuda);
  EXPECT_TRUE(testing::throws_error_with([] { parse_named<Backend>("tpu", "--device"); },
                                         "--device must be cpu or cuda, got 'tpu'"));
}

}  // namespace
}  // namespace convnet

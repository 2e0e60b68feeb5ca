#include "trainer/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "trainer/progress.h"

namespace convnet {
namespace {

using namespace tensorboard;

// The CRC-32C check values of RFC 3720 (iSCSI), appendix B.4, and the
// common "123456789" check value.
TEST(TensorBoard, Crc32cMatchesPublishedCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
}

// TFRecord: u64 length, its masked CRC, the data, the data's masked CRC.
TEST(TensorBoard, RecordFramesTheData) {
  const std::string data = "abc";
  const std::string r = record(data);
  ASSERT_EQ(r.size(), 8u + 4u + 3u + 4u);
  uint64_t length = 0;
  uint32_t length_crc = 0, data_crc = 0;
  std::memcpy(&length, r.data(), 8);
  std::memcpy(&length_crc, r.data() + 8, 4);
  std::memcpy(&data_crc, r.data() + 15, 4);
  EXPECT_EQ(length, 3u);
  EXPECT_EQ(length_crc, masked_crc32c(&length, 8));
  EXPECT_EQ(r.substr(12, 3), data);
  EXPECT_EQ(data_crc, masked_crc32c("abc", 3));
  const uint32_t c = crc32c("abc", 3);
  EXPECT_EQ(masked_crc32c("abc", 3), ((c >> 15) | (c << 17)) + 0xA282EAD8u);
}

// The protobuf wire bytes of one scalar: Event{wall_time 1.5, step 300,
// summary{value{tag "a", simple_value 0.5}}}.
TEST(TensorBoard, ScalarEventHasTheWireFormat) {
  const std::string e = scalars_event(1.5, 300, {{"a", 0.5}});
  std::string expected = "\x09";  // field 1, fixed64
  double wall = 1.5;
  expected.append(reinterpret_cast<const char*>(&wall), 8);
  expected += "\x10\xAC\x02";  // field 2, varint 300
  // field 5 (bytes) of 10: Summary.value (field 1) of 8: tag "a", simple_value 0.5f
  expected +=
      "\x2A\x0A\x0A\x08\x0A\x01"
      "a"
      "\x15";
  const float half = 0.5f;
  expected.append(reinterpret_cast<const char*>(&half), 4);
  EXPECT_EQ(e, expected);
}

// SessionLog{status START, msg "m"} at step 9 (Event.session_log is field 7).
TEST(TensorBoard, SessionStartHasTheWireFormat) {
  const std::string e = session_start_event(0.0, 9, "m");
  EXPECT_EQ(e.substr(9), std::string("\x10\x09\x3A\x05\x08\x01\x1A\x01m", 9));
}

// Records go to the metrics file as JSON lines and, for train and eval, to
// the event file; other kinds (start, end) only to the metrics file.
TEST(TensorBoard, ReporterWritesCurvesOfTrainAndEvalRecords) {
  const std::string dir = ::testing::TempDir() + "tb_reporter_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string events;
  {
    ProgressReporter reporter(dir + "/metrics.jsonl", dir, 5);
    reporter.record(JsonLine().add("kind", "start").add("step", int64_t(4)));
    reporter.record(JsonLine().add("kind", "train").add("step", int64_t(6)).add("loss", 2.5));
    events = reporter.tensorboard()->path();
  }
  std::ifstream in(events, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string expected = record(scalars_event(0, 6, {{"train/loss", 2.5}}));
  // Three records: file_version, SessionLog START at 5, the train scalars
  // (wall times differ; compare the scalar record's tail: tag and value).
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(bytes.find("train/loss"), std::string::npos);
  EXPECT_EQ(bytes.find("start/"), std::string::npos);
  EXPECT_EQ(bytes.substr(bytes.size() - 20, 16), expected.substr(expected.size() - 20, 16));
  std::ifstream metrics(dir + "/metrics.jsonl");
  std::string first, second;
  std::getline(metrics, first);
  std::getline(metrics, second);
  EXPECT_EQ(first.rfind("{\"kind\": \"start\", \"step\": 4, \"wall_time\": ", 0), 0u) << first;
  EXPECT_EQ(second.rfind("{\"kind\": \"train\", \"step\": 6, \"loss\": 2.5, ", 0), 0u) << second;
  std::filesystem::remove_all(dir);
}

// Any string serializes as valid JSON: quotes, backslashes, control
// characters and invalid UTF-8 (replaced).
TEST(JsonLine, EscapesHostileStrings) {
  const std::string line =
      JsonLine().add("file", std::string("a\"b\\c\td\n\x01\xff") + "é").add("n", 1.5).str();
  EXPECT_EQ(line, "{\"file\": \"a\\\"b\\\\c\\td\\n\\u0001\xEF\xBF\xBD\xC3\xA9\", \"n\": 1.5}");
  EXPECT_EQ(JsonLine().add("x", std::nan("")).str(), "{\"x\": null}");
}

}  // namespace
}  // namespace convnet

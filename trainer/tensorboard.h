// TensorBoard event files, written without TensorFlow: TFRecord framing
// (length, masked CRC-32C of the length, data, masked CRC-32C of the data) of
// Event protocol buffers, encoded by hand for the few fields used:
//
//   Event       wall_time (1, double), step (2, int64), file_version (3,
//               string), summary (5, Summary), session_log (7, SessionLog)
//   Summary     value (1, repeated Value)
//   Value       tag (1, string), simple_value (2, float)
//   SessionLog  status (1, enum: START = 1), msg (3, string)
//
// (tensorflow/core/util/event.proto and framework/summary.proto). Each start
// of a run writes a new file beginning with SessionLog START at the first
// global step it can record (the checkpoint's step + 1), the record
// TensorBoard's reader takes as a restart: it drops what earlier files logged
// from that step on (after the checkpoint, by a run that then died), so a
// resumed curve has no overlap (steps are global) and no gap.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace convnet {

namespace tensorboard {
// CRC-32C (Castagnoli) of n bytes, and TFRecord's masking of it.
uint32_t crc32c(const void* data, std::size_t n);
uint32_t masked_crc32c(const void* data, std::size_t n);
// One TFRecord: the framing of `data`.
std::string record(const std::string& data);
// Serialized Event messages.
std::string file_version_event(double wall_time);
std::string session_start_event(double wall_time, int64_t step, const std::string& message);
std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, double>>& values);
}  // namespace tensorboard

class TensorBoardWriter {
 public:
  // Creates DIR/events.out.tfevents.<unix seconds>.<host>.<pid>.convnet with
  // its file_version record and a SessionLog START at first_step.
  TensorBoardWriter(const std::string& directory, int64_t first_step);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One event of scalar values at a global step, written and flushed (a
  // running TensorBoard sees it at once). Throws naming the file when the
  // write fails (disk full).
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace convnet

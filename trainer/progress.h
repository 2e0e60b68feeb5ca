// Rank 0's progress output: a status line redrawn in place on a terminal
// (one line per log interval otherwise), the JSON-lines metrics file and the
// TensorBoard event file (trainer/tensorboard.h).
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/tensorboard.h"

namespace convnet {

// One JSON object, keys in insertion order, serialized by nlohmann::json
// (any string is escaped; a non-finite number is written as null).
class JsonLine {
 public:
  template <typename T>
  JsonLine& add(const char* key, const T& value) {
    json_[key] = value;
    return *this;
  }
  std::string str() const;
  const nlohmann::ordered_json& json() const { return json_; }

 private:
  nlohmann::ordered_json json_ = nlohmann::ordered_json::object();
};

// Seconds since the Unix epoch (UTC), the records' "wall_time".
double unix_time();

class ProgressReporter {
 public:
  // metrics_path empty: no file. tensorboard_dir non-empty: an event file
  // there for records from global step first_step on (trainer/tensorboard.h).
  explicit ProgressReporter(const std::string& metrics_path,
                            const std::string& tensorboard_dir = "", int64_t first_step = 1);
  ~ProgressReporter();
  double elapsed() const;
  // Status line: on a terminal redrawn with \r, else printed as is.
  void status(const std::string& line, bool final_for_interval);
  // Appended with "wall_time" and flushed; a "train" or "eval" record also
  // goes to TensorBoard: every number but its epoch, step, time, wall_time and
  // count as the scalar KIND/KEY at its "step".
  void record(JsonLine line);
  void message(const std::string& line);  // ends a redrawn line first
  const TensorBoardWriter* tensorboard() const { return tensorboard_.get(); }

 private:
  std::FILE* metrics_ = nullptr;
  std::string metrics_path_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace convnet

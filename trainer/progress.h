// Rank 0's progress output: a status line redrawn in place on a terminal
// (one line per log interval otherwise), and the JSON-lines metrics file.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace convnet {

class JsonLine {
 public:
  JsonLine& add(const char* key, double value);
  JsonLine& add(const char* key, int64_t value);
  JsonLine& add(const char* key, const std::string& value);
  JsonLine& add(const char* key, const std::vector<double>& values);
  JsonLine& add(const char* key, const std::vector<std::string>& values);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  JsonLine& append(const char* key, const std::string& json);
  std::string body_;
};

class ProgressReporter {
 public:
  // metrics_path empty: no file.
  explicit ProgressReporter(const std::string& metrics_path);
  ~ProgressReporter();
  double elapsed() const;
  // Status line: on a terminal redrawn with \r, else printed as is.
  void status(const std::string& line, bool final_for_interval);
  void record(const JsonLine& line);      // appended and flushed
  void message(const std::string& line);  // ends a redrawn line first

 private:
  std::FILE* metrics_ = nullptr;
  std::string metrics_path_;
  bool tty_;
  bool open_line_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace convnet

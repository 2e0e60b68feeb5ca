#include "trainer/progress.h"

#include <unistd.h>

#include <cmath>

#include "core/error.h"

namespace convnet {

JsonLine& JsonLine::add(const char* key, double value) {
  char text[64];
  std::snprintf(text, sizeof text, std::isfinite(value) ? "%.6g" : "null", value);
  body_ += (body_.empty() ? "\"" : ", \"") + std::string(key) + "\": " + text;
  return *this;
}

JsonLine& JsonLine::add(const char* key, int64_t value) {
  body_ += (body_.empty() ? "\"" : ", \"") + std::string(key) + "\": " + std::to_string(value);
  return *this;
}

JsonLine& JsonLine::add(const char* key, const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  body_ += (body_.empty() ? "\"" : ", \"") + std::string(key) + "\": \"" + escaped + "\"";
  return *this;
}

ProgressReporter::ProgressReporter(const std::string& metrics_path)
    // mpirun hands ranks a pseudo-terminal even when its own output goes to a
    // file: redraw in place only outside a parallel launcher.
    : tty_(isatty(1) && launcher_rank() < 0), start_(std::chrono::steady_clock::now()) {
  if (!metrics_path.empty()) {
    metrics_ = std::fopen(metrics_path.c_str(), "a");
    CONVNET_CHECK(metrics_ != nullptr, "cannot open ", metrics_path, " for writing");
  }
}

ProgressReporter::~ProgressReporter() {
  if (open_line_) std::printf("\n");
  if (metrics_) std::fclose(metrics_);
}

double ProgressReporter::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressReporter::status(const std::string& line, bool final_for_interval) {
  if (tty_) {
    std::printf("\r%s\033[K", line.c_str());
    open_line_ = true;
  } else if (final_for_interval) {
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

void ProgressReporter::record(const JsonLine& line) {
  if (!metrics_) return;
  std::fprintf(metrics_, "%s\n", line.str().c_str());
  std::fflush(metrics_);
}

void ProgressReporter::message(const std::string& line) {
  if (open_line_) std::printf("\n");
  open_line_ = false;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace convnet

#include "trainer/progress.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace convnet {

namespace {

std::string json_number(double value) {
  char text[64];
  std::snprintf(text, sizeof text, std::isfinite(value) ? "%.6g" : "null", value);
  return text;
}

std::string json_string(const std::string& value) {
  std::string escaped = "\"";
  for (char c : value) {
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return escaped + "\"";
}

template <typename T, typename Format>
std::string json_array(const std::vector<T>& values, Format format) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + format(values[i]);
  return text + "]";
}

}  // namespace

JsonLine& JsonLine::append(const char* key, const std::string& json) {
  body_ += (body_.empty() ? "\"" : ", \"") + std::string(key) + "\": " + json;
  return *this;
}

JsonLine& JsonLine::add(const char* key, double value) { return append(key, json_number(value)); }

JsonLine& JsonLine::add(const char* key, int64_t value) {
  return append(key, std::to_string(value));
}

JsonLine& JsonLine::add(const char* key, const std::string& value) {
  return append(key, json_string(value));
}

JsonLine& JsonLine::add(const char* key, const std::vector<double>& values) {
  return append(key, json_array(values, json_number));
}

JsonLine& JsonLine::add(const char* key, const std::vector<std::string>& values) {
  return append(key, json_array(values, json_string));
}

ProgressReporter::ProgressReporter(const std::string& metrics_path)
    // mpirun hands ranks a pseudo-terminal even when its own output goes to a
    // file: redraw in place only outside a parallel launcher.
    : tty_(isatty(1) && launcher_rank() < 0), start_(std::chrono::steady_clock::now()) {
  if (!metrics_path.empty()) {
    struct stat info;
    CONVNET_CHECK(stat(metrics_path.c_str(), &info) != 0 || S_ISREG(info.st_mode), metrics_path,
                  " exists and is not a regular file (a device, FIFO or directory)");
    metrics_ = std::fopen(metrics_path.c_str(), "a");
    CONVNET_CHECK(metrics_ != nullptr, "cannot open ", metrics_path,
                  " for writing: ", std::strerror(errno));
    metrics_path_ = metrics_path;
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
  const bool written = std::fprintf(metrics_, "%s\n", line.str().c_str()) >= 0;
  CONVNET_CHECK(std::fflush(metrics_) == 0 && written, "writing ", metrics_path_,
                " failed: ", std::strerror(errno), " (disk full?)");
}

void ProgressReporter::message(const std::string& line) {
  if (open_line_) std::printf("\n");
  open_line_ = false;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace convnet

#include "trainer/progress.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace convnet {

namespace {
// nlohmann's serialization (escaping; invalid UTF-8 replaced, so that any file
// or class name serializes) with the spacing of convnet's records:
// {"key": value, ...} and [a, b].
std::string json_text(const nlohmann::ordered_json& j) {
  if (j.is_array()) {
    std::string text = "[";
    for (std::size_t i = 0; i < j.size(); ++i) text += (i ? ", " : "") + json_text(j[i]);
    return text + "]";
  }
  if (j.is_object()) {
    std::string text = "{";
    for (const auto& [key, value] : j.items())
      text += (text.size() > 1 ? ", " : "") + json_text(nlohmann::ordered_json(key)) + ": " +
              json_text(value);
    return text + "}";
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}
}  // namespace

std::string JsonLine::str() const { return json_text(json_); }

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

ProgressReporter::ProgressReporter(const std::string& metrics_path,
                                   const std::string& tensorboard_dir, int64_t first_step)
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
  if (!tensorboard_dir.empty())
    tensorboard_ = std::make_unique<TensorBoardWriter>(tensorboard_dir, first_step);
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

namespace {
// The numbers of a train or eval record as TensorBoard scalars KIND/KEY.
std::vector<std::pair<std::string, double>> scalars_of(const nlohmann::ordered_json& j) {
  std::vector<std::pair<std::string, double>> scalars;
  const std::string kind = j["kind"].get<std::string>();
  for (const auto& [key, value] : j.items())
    if (value.is_number() && key != "epoch" && key != "step" && key != "time" &&
        key != "wall_time" && key != "count")
      scalars.emplace_back(kind + "/" + key, value.get<double>());
  return scalars;
}
}  // namespace

void ProgressReporter::record(JsonLine line) {
  line.add("wall_time", unix_time());
  const nlohmann::ordered_json& j = line.json();
  const bool curve = j.contains("kind") &&
                     (j["kind"] == "train" || j["kind"] == "eval" || j["kind"] == "eval_ema");
  if (tensorboard_ && curve && j.contains("step") && j["step"].is_number_integer()) {
    const auto scalars = scalars_of(j);
    if (!scalars.empty()) tensorboard_->scalars(j["step"].get<int64_t>(), scalars);
  }
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

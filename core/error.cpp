#include "core/error.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace convnet {

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name)) {
      char* end = nullptr;
      const long rank = std::strtol(value, &end, 10);
      if (end != value && *end == '\0' && rank >= 0) return static_cast<int>(rank);
    }
  }
  return -1;
}

namespace detail {

bool debug_messages() {
  const char* value = std::getenv("CONVNET_DEBUG");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

std::string failure_text(const char* expr, const char* file, int line, const std::string& message) {
  std::ostringstream out;
  const int rank = launcher_rank();
  if (rank >= 0) out << "[rank " << rank << "] ";
  // The user's terms first; where in the source, with CONVNET_DEBUG=1 (or
  // when the check has no message of its own).
  if (message.empty() || debug_messages()) out << file << ":" << line << ": check failed: " << expr;
  if (!message.empty()) out << (debug_messages() ? ": " : "") << message;
  return out.str();
}

void throw_failure(const char* expr, const char* file, int line, const std::string& message) {
  throw Error(failure_text(expr, file, line, message));
}

void warn_failure(const char* expr, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "convnet warning: %s\n", failure_text(expr, file, line, message).c_str());
}

}  // namespace detail
}  // namespace convnet

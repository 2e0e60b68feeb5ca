#include "core/error.h"

#include <cstdio>
#include <cstdlib>

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

std::string failure_text(const char* expr, const char* file, int line, const std::string& message) {
  std::ostringstream out;
  const int rank = launcher_rank();
  if (rank >= 0) out << "[rank " << rank << "] ";
  out << file << ":" << line << ": check failed: " << expr;
  if (!message.empty()) out << ": " << message;
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

// Error checking for convnet.
//
// One macro family built from one generic macro. A failed check throws
// convnet::Error whose message carries the process's rank in the job (when
// launched by mpirun/srun) and the caller's message, in the user's terms:
//
//   [rank 3] layer conv1: zero-sized dimension
//
// With CONVNET_DEBUG=1 (and for a check without a message) the failed
// expression and its file:line come first:
//
//   [rank 3] core/tensor.cpp:42: check failed: numel > 0: layer conv1: zero-sized dimension
//
// CONVNET_CHECK(cond, msg...)              throws when cond is false.
// CONVNET_CHECK_STATUS(expr, ok, to_str)   throws when a C library call does not return ok;
//                                          to_str(status) gives the library's error text.
// CONVNET_WARN_IF_NOT(cond, msg...)        logs to stderr instead of throwing (destructors).
//
// The rank is read from the launcher's environment (OMPI_COMM_WORLD_RANK, PMIX_RANK,
// SLURM_PROCID), so core/ needs no MPI and holds no global state.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace convnet {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The job rank from the launcher environment, or -1 outside a parallel launch.
int launcher_rank();

namespace detail {

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// "[rank R] message", or "[rank R] file:line: check failed: expr: message"
// under CONVNET_DEBUG=1 or without a message.
std::string failure_text(const char* expr, const char* file, int line, const std::string& message);
[[noreturn]] void throw_failure(const char* expr, const char* file, int line,
                                const std::string& message);
void warn_failure(const char* expr, const char* file, int line, const std::string& message);

}  // namespace detail
}  // namespace convnet

#define CONVNET_CHECK(cond, ...)                                                                  \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      ::convnet::detail::throw_failure(#cond, __FILE__, __LINE__,                                 \
                                       ::convnet::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

#define CONVNET_CHECK_STATUS(expr, ok_value, to_string)                                        \
  do {                                                                                         \
    const auto convnet_status_ = (expr);                                                       \
    if (convnet_status_ != (ok_value))                                                         \
      ::convnet::detail::throw_failure(#expr, __FILE__, __LINE__,                              \
                                       ::convnet::detail::concat(to_string(convnet_status_))); \
  } while (0)

#define CONVNET_WARN_IF_NOT(cond, ...)                                                           \
  do {                                                                                           \
    if (!(cond))                                                                                 \
      ::convnet::detail::warn_failure(#cond, __FILE__, __LINE__,                                 \
                                      ::convnet::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

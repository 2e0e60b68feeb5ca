#include "comm/single_process_communicator.h"

#include <cstdio>
#include <cstdlib>

namespace convnet {

std::unique_ptr<Communicator> SingleProcessCommunicator::duplicate_impl() {
  return std::make_unique<SingleProcessCommunicator>();
}

void SingleProcessCommunicator::abort_impl(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(exit_code);
}

}  // namespace convnet

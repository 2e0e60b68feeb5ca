// Running a command body on every rank of a (possibly single-process) job.
#pragma once

#include <cstdio>
#include <exception>

#include "comm/mpi_communicator.h"

namespace convnet {

// Calls body(communicator) and returns its exit status. An error is printed
// and, in a multi-rank job, ends every rank (MPI_Abort): a rank that stopped
// alone would leave the others waiting in their next collective.
template <typename Body>
int run_collective(const char* command, Body body) {
  auto communicator = make_communicator();
  try {
    return body(*communicator);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convnet %s: error: %s\n", command, e.what());
    if (communicator->size() > 1) communicator->abort(1);
    return 1;
  }
}

}  // namespace convnet

// The MPI communicator and the factory that picks a communicator.
//
// make_communicator() returns an MPI communicator over MPI_COMM_WORLD when a
// parallel launcher started the process (mpirun/mpiexec: OMPI_COMM_WORLD_RANK;
// PMIx or PMI launchers: PMIX_RANK, PMI_RANK; srun: SLURM_PROCID; see
// launcher_rank() in core/error.h), and a SingleProcessCommunicator otherwise,
// so a plain `convnet train` never initializes MPI (Open MPI's singleton
// initialization without a launcher is slow and depends on the environment).
//
// MPI is initialized by the first MPI communicator and finalized when the last
// one (the first and its duplicates) is destroyed. MPI can be initialized once
// per process: make one communicator and duplicate() it; asking for a second
// one while MPI is initialized, or after it was finalized, throws.
//
// Threads: MPI is initialized with MPI_THREAD_MULTIPLE (Debian's Open MPI 4.1
// provides it), and thread_support() is multiple. An MPI library that only
// provides MPI_THREAD_SERIALIZED gives ThreadSupport::serialized: the caller
// must not use any communicator from one thread while another thread (e.g. a
// GradientReducer's communication thread during a step) is inside a call. Less
// than MPI_THREAD_SERIALIZED is an error at construction.
//
// Errors: the communicators use MPI_ERRORS_RETURN; a failed MPI call throws
// convnet::Error with MPI_Error_string's text and the rank. After a failure
// (an MPI call failed, or the last communicator is destroyed while an
// exception unwinds the stack) MPI is not finalized: MPI_Finalize waits for
// every rank, and the others may be stuck in a collective waiting for this
// one. The process then exits without MPI_Finalize and the launcher (mpirun)
// ends the other ranks. A rank that catches an error and still holds the
// communicator should call abort() instead of returning.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace convnet {

// An MPI communicator over all ranks of the job (MPI_COMM_WORLD), initializing
// MPI. Works without a launcher too (as a singleton MPI job of one rank).
std::unique_ptr<Communicator> make_mpi_communicator();

// make_mpi_communicator() under a parallel launcher, else a
// SingleProcessCommunicator.
std::unique_ptr<Communicator> make_communicator();

}  // namespace convnet

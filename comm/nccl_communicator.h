// The GPU communicator (builds with the GPU backend): NCCL for float data in
// GPU memory, and a host communicator (MPI, or the single-process one) for
// everything else: host buffers, barriers, broadcasts, metrics.
//
// Bootstrap: rank 0 creates an ncclUniqueId and broadcasts it over the host
// communicator; every rank then joins with ncclCommInitRank on its GPU.
//
// Ordering with the compute stream: a device allreduce first records an event
// on the compute stream (everything enqueued there so far, e.g. the backward
// kernels that produced a gradient bucket) and makes the communicator's own
// stream wait for it, then runs ncclAllReduce (ncclAvg for average) on that
// stream. The compute stream never waits for communication by itself: the
// returned PendingReduce's wait() blocks the calling thread until the result
// is in the buffer, and its defer() makes the compute stream wait for it
// instead (the GradientReducer's way: no host wait before the update).
//
// Errors: NCCL failures throw convnet::Error with NCCL's message; waits poll
// ncclCommGetAsyncError so a dead peer becomes an error instead of a hang
// (the trainer's --comm-timeout watchdog covers a silent one).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "comm/communicator.h"

namespace convnet {

// A communicator over the same ranks as `host` (which it duplicates, so it is
// collective) driving GPU `device`; device reductions are ordered after the
// work enqueued on `compute_stream`.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device,
                                                     cudaStream_t compute_stream);

}  // namespace convnet

// Communicator: the collectives data-parallel training needs, over a group of
// ranks that each run a full model replica.
//
// Every operation except rank()/size()/describe() is collective: every rank of
// the group must call the same operations in the same order with matching
// arguments (same count, same root); a mismatch is undefined behaviour in MPI
// and usually a hang. Reductions are in place: data holds this rank's
// contribution on entry and the result on every rank on return.
//
// Implementations:
//   SingleProcessCommunicator (comm/single_process_communicator.h): a world of
//     one; reductions and broadcasts leave data unchanged.
//   MPI (comm/mpi_communicator.h): make_communicator() picks it when the
//     process was started by mpirun/srun.
//
// The public functions check their arguments and call the protected *_impl
// functions, which an implementation overrides.
//
// Failure: a failed call throws convnet::Error. A rank that gives up while the
// others still run must call abort() (ending the whole job) rather than return:
// the others would wait for it forever in their next collective.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/arrival_board.h"

namespace convnet {

enum class ReduceOp {
  sum,      // element-wise sum over ranks
  average,  // element-wise sum over ranks divided by size() (floating point only)
};
std::string to_string(ReduceOp op);

// Whether different threads may call a communicator (and its duplicates) at the
// same time. With serialized, the caller must make sure that at most one
// thread of the process is inside any communicator call at a time.
enum class ThreadSupport { serialized, multiple };
std::string to_string(ThreadSupport support);

// A reduction in flight (Communicator::allreduce_async). Move-only. The data
// passed to allreduce_async must stay valid, and must not be read or written,
// until the reduction is complete: test() returned true or wait() returned.
// The destructor waits for a reduction still in flight (logging instead of
// throwing on failure), so the buffer is never written after it is freed.
class PendingReduce {
 public:
  // What an implementation provides; test() and wait() are called until one
  // reports completion, never again afterwards.
  class Impl {
   public:
    virtual ~Impl() = default;
    // Makes progress; true once the result is in the buffer.
    virtual bool test() = 0;
    // Blocks until the result is in the buffer.
    virtual void wait() = 0;
    // Optional, instead of blocking in wait(): orders whatever the caller
    // enqueues from now on after the reduction, without a host wait (a GPU
    // reduction: the compute stream waits for its end). Returns whether it
    // did; test() is still called until it reports completion (and errors).
    virtual bool defer() { return false; }
  };

  PendingReduce() = default;  // an already completed reduction
  explicit PendingReduce(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  PendingReduce(PendingReduce&& other) noexcept = default;
  PendingReduce& operator=(PendingReduce&& other) noexcept;  // waits for *this first
  PendingReduce(const PendingReduce&) = delete;
  PendingReduce& operator=(const PendingReduce&) = delete;
  ~PendingReduce();

  // Non-blocking: makes progress and returns whether the reduction is complete.
  bool test();
  // Blocks until the reduction is complete; returns at once if it is.
  void wait();
  // Orders the caller's later device work after the reduction without
  // blocking, where the implementation can (Impl::defer); true when done so
  // or already complete. The handle stays in flight until test() says so.
  bool defer();
  // Complete (as far as this handle knows: test() or wait() said so).
  bool done() const { return impl_ == nullptr; }

 private:
  std::unique_ptr<Impl> impl_;
};

class Communicator;
// This node's cores shared out among its ranks (at least 1): the default
// number of compute threads per rank, so ranks on a node never oversubscribe.
int cores_per_local_rank(const Communicator& communicator);

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // This process's rank in [0, size()), and the group size.
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among, and number of, the group's ranks on this node (shared memory);
  // e.g. to pick a GPU or split the node's cores.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  virtual ThreadSupport thread_support() const = 0;
  // One line for logs, e.g. "mpi: rank 2 of 4, 2 on this node, MPI_THREAD_MULTIPLE".
  virtual std::string describe() const = 0;

  // Returns once every rank has entered barrier().
  void barrier();

  // Copies bytes bytes at data on rank root to data on every other rank.
  void broadcast(void* data, std::size_t bytes, int root);
  // A trivially copyable value.
  template <typename T>
  void broadcast(T& value, int root) {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast a trivially copyable value");
    broadcast(static_cast<void*>(&value), sizeof(T), root);
  }
  // A string of any length: the other ranks' strings are resized to root's.
  void broadcast(std::string& text, int root);

  // In place: data[i] = op over ranks of data[i], for i in [0, count).
  // average is the sum divided by size() in the element type, on every rank
  // alike, so all ranks hold bitwise identical results. (NCCL's average, on
  // device buffers, multiplies by 1 / size() before summing: the same bits
  // when size() is a power of two, within rounding otherwise.)
  void allreduce(float* data, std::size_t count, ReduceOp op);
  void allreduce(double* data, std::size_t count, ReduceOp op);
  // Exact integer sum (counts of samples, correct predictions).
  void allreduce(int64_t* data, std::size_t count);
  // Starts allreduce(data, count, op) and returns at once; see PendingReduce.
  // Progress may need test() or wait() calls (Open MPI has no progress thread).
  // Reductions started by one thread complete in any order, but they must be
  // started in the same order on every rank.
  PendingReduce allreduce_async(float* data, std::size_t count, ReduceOp op);

  // The largest value over ranks (e.g. agree on the step at which to stop).
  int64_t allreduce_max(int64_t value);
  // True on every rank when value is true on at least one rank
  // (e.g. "some rank received SIGTERM": all ranks stop together).
  bool any(bool value);

  // A new communicator over the same ranks whose operations never match this
  // one's: one thread may use the duplicate (e.g. a GradientReducer's
  // communication thread) while another uses this one, without their
  // collectives interleaving differently on different ranks (that needs
  // ThreadSupport::multiple). Collective.
  std::unique_ptr<Communicator> duplicate();

  // The host (node name) rank r runs on, as its launcher names it.
  const std::string& host_of(int rank) const;

  // A board on which every rank notes the step it has reached, for rank 0 to
  // read when ranks stall (comm/arrival_board.h). Collective.
  std::unique_ptr<ArrivalBoard> make_arrival_board() { return make_arrival_board_impl(); }

  // Ends every rank of the job with exit_code (MPI_Abort); not collective.
  [[noreturn]] void abort(int exit_code);
  // After a failure: ends this communicator's device operations in flight
  // without ending the process (NCCL: ncclCommAbort, which releases kernels
  // stuck on a dead peer, so the streams waiting for them drain). The
  // communicator is unusable afterwards; host communicators do nothing.
  // Not collective.
  void cancel() { cancel_impl(); }

 protected:
  Communicator(int rank, int size, int local_rank, int local_size);

  virtual void barrier_impl() = 0;
  virtual void broadcast_impl(void* data, std::size_t bytes, int root) = 0;
  virtual void allreduce_impl(float* data, std::size_t count, ReduceOp op) = 0;
  virtual void allreduce_impl(double* data, std::size_t count, ReduceOp op) = 0;
  virtual void allreduce_impl(int64_t* data, std::size_t count) = 0;
  virtual PendingReduce allreduce_async_impl(float* data, std::size_t count, ReduceOp op) = 0;
  virtual int64_t allreduce_max_impl(int64_t value) = 0;
  virtual std::unique_ptr<Communicator> duplicate_impl() = 0;
  [[noreturn]] virtual void abort_impl(int exit_code) = 0;
  virtual void cancel_impl() {}
  // The default board: this rank's own notes only (a world of one).
  virtual std::unique_ptr<ArrivalBoard> make_arrival_board_impl();
  // Hosts of ranks 0 .. size() - 1 (default: this machine's name for every rank).
  void set_hosts(std::vector<std::string> hosts);

 private:
  int rank_;
  int size_;
  int local_rank_;
  int local_size_;
  std::vector<std::string> hosts_;  // (size())
};

}  // namespace convnet

#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "comm/single_process_communicator.h"
#include "core/error.h"

namespace convnet {
namespace {

// MPI counts are int; larger buffers go in chunks of this many elements.
constexpr std::size_t kMaxChunk = std::size_t{1} << 30;

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return detail::concat(std::string(text, length), " (MPI error ", code, ")");
}

std::string thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return detail::concat("thread level ", level);
}

// MPI_Init_thread / MPI_Finalize, shared by every MpiCommunicator of the process.
class MpiRuntime {
 public:
  MpiRuntime() {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    CONVNET_CHECK(!finalized, "MPI was finalized; it cannot be initialized again in this process");
    CONVNET_CHECK(!initialized,
                  "MPI is already initialized: make one communicator per process and "
                  "duplicate() it");
    // Before initialization MPI errors are fatal; a failure here ends the process.
    CONVNET_CHECK_STATUS(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided_),
                         MPI_SUCCESS, mpi_error_string);
    if (provided_ < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      CONVNET_CHECK(false, "the MPI library provides only ", thread_level_name(provided_),
                    "; convnet needs MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE (the "
                    "gradient reducer calls MPI from its communication thread)");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }

  ~MpiRuntime() {
    if (failed_ || std::uncaught_exceptions() > 0) {
      std::fprintf(stderr,
                   "convnet: [rank %d] leaving MPI without MPI_Finalize after a failure "
                   "(MPI_Finalize would wait for the other ranks); the launcher ends the job\n",
                   launcher_rank());
      return;
    }
    MPI_Finalize();
  }

  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int provided() const { return provided_; }
  ThreadSupport thread_support() const {
    return provided_ >= MPI_THREAD_MULTIPLE ? ThreadSupport::multiple : ThreadSupport::serialized;
  }

  // Throws for an MPI error code and remembers that MPI failed (see ~MpiRuntime).
  void check(int code, const char* expr, const char* file, int line) {
    if (code == MPI_SUCCESS) return;
    failed_ = true;
    detail::throw_failure(expr, file, line, mpi_error_string(code));
  }

 private:
  int provided_ = MPI_THREAD_SINGLE;
  std::atomic<bool> failed_{false};
};

#define CONVNET_MPI_CHECK(runtime, expr) (runtime).check((expr), #expr, __FILE__, __LINE__)

// An owned MPI communicator handle (MPI_Comm_free on destruction).
class CommHandle {
 public:
  CommHandle() = default;
  explicit CommHandle(MPI_Comm comm) : comm_(comm) {}
  CommHandle(CommHandle&& other) noexcept : comm_(other.comm_) { other.comm_ = MPI_COMM_NULL; }
  CommHandle& operator=(CommHandle&&) = delete;
  CommHandle(const CommHandle&) = delete;
  CommHandle& operator=(const CommHandle&) = delete;
  ~CommHandle() {
    if (comm_ != MPI_COMM_NULL) {
      const int status = MPI_Comm_free(&comm_);
      CONVNET_WARN_IF_NOT(status == MPI_SUCCESS, "MPI_Comm_free: ", mpi_error_string(status));
    }
  }
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

template <typename T>
void divide_by(T* data, std::size_t count, int size) {
  const T divisor = static_cast<T>(size);
  for (std::size_t i = 0; i < count; ++i) data[i] /= divisor;
}

// MPI_Iallreduce requests for the chunks of one buffer.
class MpiPendingReduce final : public PendingReduce::Impl {
 public:
  MpiPendingReduce(std::shared_ptr<MpiRuntime> runtime, MPI_Comm comm, int size, float* data,
                   std::size_t count, ReduceOp op)
      : runtime_(std::move(runtime)), size_(size), data_(data), count_(count), op_(op) {
    for (std::size_t begin = 0; begin < count; begin += kMaxChunk) {
      const int chunk = static_cast<int>(std::min(kMaxChunk, count - begin));
      requests_.push_back(MPI_REQUEST_NULL);
      CONVNET_MPI_CHECK(*runtime_, MPI_Iallreduce(MPI_IN_PLACE, data + begin, chunk, MPI_FLOAT,
                                                  MPI_SUM, comm, &requests_.back()));
    }
  }

  bool test() override {
    int flag = 0;
    CONVNET_MPI_CHECK(*runtime_, MPI_Testall(static_cast<int>(requests_.size()), requests_.data(),
                                             &flag, MPI_STATUSES_IGNORE));
    if (flag) complete();
    return flag != 0;
  }

  void wait() override {
    CONVNET_MPI_CHECK(*runtime_, MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(),
                                             MPI_STATUSES_IGNORE));
    complete();
  }

 private:
  void complete() {
    if (op_ == ReduceOp::average) divide_by(data_, count_, size_);
  }

  std::shared_ptr<MpiRuntime> runtime_;
  int size_;
  float* data_;
  std::size_t count_;
  ReduceOp op_;
  std::vector<MPI_Request> requests_;
};

// Every rank's processor name (its host, as the launcher names it).
std::vector<std::string> gather_hosts(MpiRuntime& runtime, MPI_Comm comm, int size) {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  CONVNET_MPI_CHECK(runtime, MPI_Get_processor_name(name, &length));
  std::vector<char> all(static_cast<std::size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  CONVNET_MPI_CHECK(runtime, MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(),
                                           MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm));
  std::vector<std::string> hosts;
  for (int r = 0; r < size; ++r) {
    const char* begin = all.data() + static_cast<std::size_t>(r) * MPI_MAX_PROCESSOR_NAME;
    hosts.emplace_back(begin, strnlen(begin, MPI_MAX_PROCESSOR_NAME));
  }
  return hosts;
}

// A duplicate of parent whose errors are returned, not fatal.
CommHandle duplicate_comm(MpiRuntime& runtime, MPI_Comm parent) {
  MPI_Comm comm = MPI_COMM_NULL;
  CONVNET_MPI_CHECK(runtime, MPI_Comm_dup(parent, &comm));
  CommHandle handle(comm);
  CONVNET_MPI_CHECK(runtime, MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  return handle;
}

// The arrival board over its own duplicate of the communicator: rank 0 keeps
// one receive posted per other rank; the others send their newest step when
// their previous note has left.
class MpiArrivalBoard final : public ArrivalBoard {
 public:
  MpiArrivalBoard(std::shared_ptr<MpiRuntime> runtime, MPI_Comm parent, int rank, int size)
      : runtime_(std::move(runtime)),
        comm_(duplicate_comm(*runtime_, parent)),
        rank_(rank),
        last_(static_cast<std::size_t>(size)),
        when_(static_cast<std::size_t>(size), std::chrono::steady_clock::now()) {
    if (rank_ != 0) return;
    received_.assign(last_.size(), -1);
    requests_.assign(last_.size(), MPI_REQUEST_NULL);
    for (int r = 1; r < size; ++r) post_receive(r);
  }
  ~MpiArrivalBoard() override {
    for (MPI_Request& request : requests_) {
      if (request == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&request);
      MPI_Request_free(&request);
    }
    if (send_request_ != MPI_REQUEST_NULL) MPI_Request_free(&send_request_);
  }

  // A note travels as one int64: step * 4 + phase.
  void note(int64_t step, StepPhase phase) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rank_ == 0) {
      last_[0] = {.step = step, .phase = phase};
      when_[0] = std::chrono::steady_clock::now();
      drain();
      return;
    }
    int sent = 1;
    if (send_request_ != MPI_REQUEST_NULL) MPI_Test(&send_request_, &sent, MPI_STATUS_IGNORE);
    if (!sent) return;  // the previous note has not left: drop this one
    sending_ = step * 4 + static_cast<int64_t>(phase);
    MPI_Isend(&sending_, 1, MPI_INT64_T, 0, 0, comm_.get(), &send_request_);
  }

  std::vector<Arrival> arrivals() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rank_ != 0) return {};
    drain();
    const auto now = std::chrono::steady_clock::now();
    std::vector<Arrival> result = last_;
    for (std::size_t r = 0; r < result.size(); ++r)
      result[r].seconds_ago = std::chrono::duration<double>(now - when_[r]).count();
    return result;
  }

 private:
  void post_receive(int r) {
    MPI_Irecv(&received_[static_cast<std::size_t>(r)], 1, MPI_INT64_T, r, 0, comm_.get(),
              &requests_[static_cast<std::size_t>(r)]);
  }
  // Takes every note that has come in (several per rank, in order).
  void drain() {
    for (int r = 1; r < static_cast<int>(requests_.size()); ++r) {
      const auto k = static_cast<std::size_t>(r);
      for (int done = 1; done && requests_[k] != MPI_REQUEST_NULL;) {
        done = 0;
        if (MPI_Test(&requests_[k], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
        if (!done) break;
        last_[k].step = received_[k] / 4;
        last_[k].phase = static_cast<StepPhase>(received_[k] % 4);
        when_[k] = std::chrono::steady_clock::now();
        post_receive(r);
      }
    }
  }

  std::shared_ptr<MpiRuntime> runtime_;  // destroyed after comm_
  CommHandle comm_;
  int rank_;
  std::mutex mutex_;
  std::vector<Arrival> last_;                                // (size) rank 0: each rank's last note
  std::vector<std::chrono::steady_clock::time_point> when_;  // (size) when it came
  std::vector<int64_t> received_;                            // (size) rank 0: receive buffers
  std::vector<MPI_Request> requests_;
  int64_t sending_ = -1;  // other ranks: the note in flight
  MPI_Request send_request_ = MPI_REQUEST_NULL;
};

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over a duplicate of parent's group.
  static std::unique_ptr<Communicator> create(std::shared_ptr<MpiRuntime> runtime,
                                              MPI_Comm parent) {
    CommHandle handle = duplicate_comm(*runtime, parent);
    const MPI_Comm comm = handle.get();
    int rank = 0;
    int size = 0;
    CONVNET_MPI_CHECK(*runtime, MPI_Comm_rank(comm, &rank));
    CONVNET_MPI_CHECK(*runtime, MPI_Comm_size(comm, &size));
    // The ranks that share memory with this one: the ranks on this node.
    MPI_Comm node = MPI_COMM_NULL;
    CONVNET_MPI_CHECK(*runtime,
                      MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    CommHandle node_handle(node);
    int local_rank = 0;
    int local_size = 0;
    CONVNET_MPI_CHECK(*runtime, MPI_Comm_rank(node, &local_rank));
    CONVNET_MPI_CHECK(*runtime, MPI_Comm_size(node, &local_size));
    std::vector<std::string> hosts = gather_hosts(*runtime, comm, size);
    auto communicator = std::unique_ptr<MpiCommunicator>(new MpiCommunicator(
        std::move(runtime), std::move(handle), rank, size, local_rank, local_size));
    communicator->set_hosts(std::move(hosts));
    return communicator;
  }

  ThreadSupport thread_support() const override { return runtime_->thread_support(); }

  std::string describe() const override {
    return detail::concat("mpi: rank ", rank(), " of ", size(), " on ", host_of(rank()), ", ",
                          local_size(), " on this node, ", thread_level_name(runtime_->provided()));
  }

 protected:
  void barrier_impl() override { CONVNET_MPI_CHECK(*runtime_, MPI_Barrier(comm())); }

  void broadcast_impl(void* data, std::size_t bytes, int root) override {
    for (std::size_t begin = 0; begin < bytes; begin += kMaxChunk) {
      const int chunk = static_cast<int>(std::min(kMaxChunk, bytes - begin));
      CONVNET_MPI_CHECK(*runtime_,
                        MPI_Bcast(static_cast<char*>(data) + begin, chunk, MPI_BYTE, root, comm()));
    }
  }

  void allreduce_impl(float* data, std::size_t count, ReduceOp op) override {
    sum(data, count, MPI_FLOAT);
    if (op == ReduceOp::average) divide_by(data, count, size());
  }

  void allreduce_impl(double* data, std::size_t count, ReduceOp op) override {
    sum(data, count, MPI_DOUBLE);
    if (op == ReduceOp::average) divide_by(data, count, size());
  }

  void allreduce_impl(int64_t* data, std::size_t count) override { sum(data, count, MPI_INT64_T); }

  PendingReduce allreduce_async_impl(float* data, std::size_t count, ReduceOp op) override {
    if (count == 0) return PendingReduce();
    return PendingReduce(
        std::make_unique<MpiPendingReduce>(runtime_, comm(), size(), data, count, op));
  }

  int64_t allreduce_max_impl(int64_t value) override {
    int64_t result = 0;
    CONVNET_MPI_CHECK(*runtime_, MPI_Allreduce(&value, &result, 1, MPI_INT64_T, MPI_MAX, comm()));
    return result;
  }

  std::unique_ptr<Communicator> duplicate_impl() override { return create(runtime_, comm()); }

  std::unique_ptr<ArrivalBoard> make_arrival_board_impl() override {
    return std::make_unique<MpiArrivalBoard>(runtime_, comm(), rank(), size());
  }

  void abort_impl(int exit_code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(comm(), exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] true
  }

 private:
  MpiCommunicator(std::shared_ptr<MpiRuntime> runtime, CommHandle comm, int rank, int size,
                  int local_rank, int local_size)
      : Communicator(rank, size, local_rank, local_size),
        runtime_(std::move(runtime)),
        comm_(std::move(comm)) {}

  MPI_Comm comm() const { return comm_.get(); }

  template <typename T>
  void sum(T* data, std::size_t count, MPI_Datatype type) {
    for (std::size_t begin = 0; begin < count; begin += kMaxChunk) {
      const int chunk = static_cast<int>(std::min(kMaxChunk, count - begin));
      CONVNET_MPI_CHECK(*runtime_,
                        MPI_Allreduce(MPI_IN_PLACE, data + begin, chunk, type, MPI_SUM, comm()));
    }
  }

  // Declared first so that it is destroyed last: MPI_Comm_free before MPI_Finalize.
  std::shared_ptr<MpiRuntime> runtime_;
  CommHandle comm_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  return MpiCommunicator::create(std::make_shared<MpiRuntime>(), MPI_COMM_WORLD);
}

std::unique_ptr<Communicator> make_communicator() {
  if (launcher_rank() >= 0) return make_mpi_communicator();
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace convnet

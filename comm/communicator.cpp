#include "comm/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace convnet {

std::string to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::average:
      return "average";
  }
  return "unknown";
}

std::string to_string(ThreadSupport support) {
  switch (support) {
    case ThreadSupport::serialized:
      return "serialized";
    case ThreadSupport::multiple:
      return "multiple";
  }
  return "unknown";
}

// ---- PendingReduce ----------------------------------------------------------

PendingReduce& PendingReduce::operator=(PendingReduce&& other) noexcept {
  if (this != &other) {
    PendingReduce finished = std::move(*this);  // its destructor waits
    impl_ = std::move(other.impl_);
  }
  return *this;
}

PendingReduce::~PendingReduce() {
  if (!impl_) return;
  // Never return while the reduction may still write into the caller's buffer.
  try {
    impl_->wait();
  } catch (const std::exception& e) {
    CONVNET_WARN_IF_NOT(false,
                        "a reduction in flight failed in its handle's destructor: ", e.what());
  }
}

bool PendingReduce::test() {
  if (impl_ && impl_->test()) impl_.reset();
  return impl_ == nullptr;
}

bool PendingReduce::defer() { return !impl_ || impl_->defer(); }

void PendingReduce::wait() {
  if (!impl_) return;
  impl_->wait();
  impl_.reset();
}

// ---- Communicator -----------------------------------------------------------

Communicator::Communicator(int rank, int size, int local_rank, int local_size)
    : rank_(rank), size_(size), local_rank_(local_rank), local_size_(local_size) {
  CONVNET_CHECK(size > 0 && rank >= 0 && rank < size, "rank ", rank, " of ", size);
  CONVNET_CHECK(local_size > 0 && local_size <= size && local_rank >= 0 && local_rank < local_size,
                "local rank ", local_rank, " of ", local_size, " (", size, " ranks in all)");
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) std::snprintf(name, sizeof name, "localhost");
  hosts_.assign(static_cast<std::size_t>(size), name);
}

const std::string& Communicator::host_of(int rank) const {
  CONVNET_CHECK(rank >= 0 && rank < size_, "host of rank ", rank, " of ", size_);
  return hosts_[static_cast<std::size_t>(rank)];
}

void Communicator::set_hosts(std::vector<std::string> hosts) {
  CONVNET_CHECK(static_cast<int>(hosts.size()) == size_, hosts.size(), " hosts for ", size_,
                " ranks");
  hosts_ = std::move(hosts);
}

const char* describe(StepPhase phase) {
  switch (phase) {
    case StepPhase::data:
      return "in the data loader";
    case StepPhase::compute:
      return "in forward/backward";
    case StepPhase::waiting:
      return "waiting for the others";
  }
  return "?";
}

namespace {

// Rank 0's own notes; other ranks' notes go nowhere (a world of one has none).
class LocalArrivalBoard final : public ArrivalBoard {
 public:
  LocalArrivalBoard(int rank, int size) : rank_(rank), last_(static_cast<std::size_t>(size)) {}
  void note(int64_t step, StepPhase phase) override {
    std::lock_guard<std::mutex> lock(mutex_);
    last_[static_cast<std::size_t>(rank_)].step = step;
    last_[static_cast<std::size_t>(rank_)].phase = phase;
    when_ = std::chrono::steady_clock::now();
  }
  std::vector<Arrival> arrivals() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rank_ != 0) return {};
    std::vector<Arrival> result = last_;
    result[0].seconds_ago =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - when_).count();
    return result;
  }

 private:
  int rank_;
  std::mutex mutex_;
  std::vector<Arrival> last_;
  std::chrono::steady_clock::time_point when_ = std::chrono::steady_clock::now();
};

}  // namespace

std::unique_ptr<ArrivalBoard> Communicator::make_arrival_board_impl() {
  return std::make_unique<LocalArrivalBoard>(rank_, size_);
}

void Communicator::barrier() { barrier_impl(); }

void Communicator::broadcast(void* data, std::size_t bytes, int root) {
  CONVNET_CHECK(root >= 0 && root < size(), "broadcast root ", root, " is not a rank of ", size());
  CONVNET_CHECK(data != nullptr || bytes == 0, "broadcast of ", bytes, " bytes from null");
  broadcast_impl(data, bytes, root);
}

void Communicator::broadcast(std::string& text, int root) {
  uint64_t length = text.size();
  broadcast(length, root);
  text.resize(length);
  broadcast(text.data(), length, root);
}

void Communicator::allreduce(float* data, std::size_t count, ReduceOp op) {
  CONVNET_CHECK(data != nullptr || count == 0, "allreduce of ", count, " floats at null");
  allreduce_impl(data, count, op);
}

void Communicator::allreduce(double* data, std::size_t count, ReduceOp op) {
  CONVNET_CHECK(data != nullptr || count == 0, "allreduce of ", count, " doubles at null");
  allreduce_impl(data, count, op);
}

void Communicator::allreduce(int64_t* data, std::size_t count) {
  CONVNET_CHECK(data != nullptr || count == 0, "allreduce of ", count, " int64s at null");
  allreduce_impl(data, count);
}

PendingReduce Communicator::allreduce_async(float* data, std::size_t count, ReduceOp op) {
  CONVNET_CHECK(data != nullptr || count == 0, "allreduce_async of ", count, " floats at null");
  return allreduce_async_impl(data, count, op);
}

int64_t Communicator::allreduce_max(int64_t value) { return allreduce_max_impl(value); }

bool Communicator::any(bool value) { return allreduce_max_impl(value ? 1 : 0) > 0; }

std::unique_ptr<Communicator> Communicator::duplicate() { return duplicate_impl(); }

void Communicator::abort(int exit_code) {
  abort_impl(exit_code);
  std::_Exit(exit_code);  // not reached: implementations do not return
}

int cores_per_local_rank(const Communicator& communicator) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores / std::max(1, communicator.local_size()));
}

}  // namespace convnet

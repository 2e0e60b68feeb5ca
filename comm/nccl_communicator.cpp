#include "comm/nccl_communicator.h"

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include "core/cuda/check.h"

#define CONVNET_NCCL(expr) CONVNET_CHECK_STATUS(expr, ncclSuccess, ncclGetErrorString)

namespace convnet {
namespace {

bool on_device(const void* data) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, data) != cudaSuccess) {
    cudaGetLastError();  // a plain host pointer on older runtimes
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

// An NCCL communicator shared by its communicator object and the pending
// reductions it started: cancel() aborts it (which releases kernels stuck on
// a dead peer, so the streams waiting for them drain) while handles remain.
struct NcclComm {
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};

  // Aborts once (later calls do nothing).
  void abort() {
    if (comm != nullptr && !aborted.exchange(true)) ncclCommAbort(comm);
  }
};

// Whether `done` is recorded; NCCL's asynchronous errors (a dead peer) become
// exceptions. A reduction of an aborted communicator is never reported done
// (its result is partial): once the abort has let its kernels end, it is an
// error.
// (cancel() and the polling run on one thread, the reducer's, so the
// communicator is not aborted between the check and the queries below.)
bool reached(cudaEvent_t done, const NcclComm& nccl) {
  const cudaError_t status = cudaEventQuery(done);
  CONVNET_CHECK(status == cudaSuccess || status == cudaErrorNotReady,
                "waiting for an NCCL allreduce: ", cudaGetErrorString(status));
  if (nccl.aborted) {
    CONVNET_CHECK(status != cudaSuccess,
                  "an NCCL allreduce abandoned: its communicator was aborted");
    return false;
  }
  if (status == cudaSuccess) return true;
  ncclResult_t async = ncclSuccess;
  CONVNET_NCCL(ncclCommGetAsyncError(nccl.comm, &async));
  CONVNET_CHECK(async == ncclSuccess || async == ncclInProgress,
                "NCCL allreduce failed: ", ncclGetErrorString(async));
  return false;
}

// Polls until `done` is recorded (cudaEventSynchronize would wait forever for
// a dead peer).
void wait_for(cudaEvent_t done, const NcclComm& nccl) {
  while (!reached(done, nccl)) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

class NcclPending final : public PendingReduce::Impl {
 public:
  NcclPending(cudaEvent_t done, std::shared_ptr<NcclComm> nccl, int device, cudaStream_t compute)
      : done_(done), nccl_(std::move(nccl)), device_(device), compute_(compute) {}
  ~NcclPending() override { cudaEventDestroy(done_); }
  bool test() override {
    CONVNET_CUDA(cudaSetDevice(device_));
    return reached(done_, *nccl_);
  }
  void wait() override {
    CONVNET_CUDA(cudaSetDevice(device_));
    wait_for(done_, *nccl_);
  }
  // The compute stream waits for the reduction on the GPU; the host does not.
  bool defer() override {
    CONVNET_CUDA(cudaSetDevice(device_));
    CONVNET_CUDA(cudaStreamWaitEvent(compute_, done_, 0));
    return true;
  }

 private:
  cudaEvent_t done_;
  std::shared_ptr<NcclComm> nccl_;
  int device_;
  cudaStream_t compute_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, int device, cudaStream_t compute)
      : Communicator(host->rank(), host->size(), host->local_rank(), host->local_size()),
        host_(std::move(host)),
        device_(device),
        compute_(compute) {
    CONVNET_CUDA(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (host_->rank() == 0) CONVNET_NCCL(ncclGetUniqueId(&id));
    host_->broadcast(id, 0);
    CONVNET_NCCL(ncclCommInitRank(&nccl_->comm, host_->size(), id, host_->rank()));
    CONVNET_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    // Abort first when something failed: NCCL kernels waiting for a dead
    // peer spin until the communicator is aborted, so a sync would hang.
    if (nccl_->comm != nullptr && !nccl_->aborted) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(nccl_->comm, &async);
      if (async != ncclSuccess || std::uncaught_exceptions() > 0) nccl_->abort();
    }
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (nccl_->comm != nullptr && !nccl_->aborted) {
      ncclCommDestroy(nccl_->comm);
      nccl_->comm = nullptr;
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  ThreadSupport thread_support() const override { return host_->thread_support(); }
  std::string describe() const override {
    int version = 0;
    ncclGetVersion(&version);
    std::ostringstream out;
    out << "nccl " << version << " on GPU " << device_ << ", host: " << host_->describe();
    return out.str();
  }

 protected:
  void barrier_impl() override { host_->barrier(); }
  void broadcast_impl(void* data, std::size_t bytes, int root) override {
    host_->broadcast(data, bytes, root);
  }
  void allreduce_impl(float* data, std::size_t count, ReduceOp op) override {
    CONVNET_CUDA(cudaSetDevice(device_));  // this thread's first CUDA call may be here
    if (!on_device(data)) return host_->allreduce(data, count, op);
    allreduce_async_impl(data, count, op).wait();
  }
  void allreduce_impl(double* data, std::size_t count, ReduceOp op) override {
    host_->allreduce(data, count, op);
  }
  void allreduce_impl(int64_t* data, std::size_t count) override { host_->allreduce(data, count); }
  PendingReduce allreduce_async_impl(float* data, std::size_t count, ReduceOp op) override {
    CONVNET_CUDA(cudaSetDevice(device_));  // before any CUDA call on this thread
    if (!on_device(data)) return host_->allreduce_async(data, count, op);
    CONVNET_CHECK(!nccl_->aborted, "an NCCL allreduce on a communicator aborted after an error");
    cudaEvent_t ready = nullptr, done = nullptr;
    CONVNET_CUDA(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CONVNET_CUDA(cudaEventRecord(ready, compute_));
    CONVNET_CUDA(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);  // released once the wait is satisfied
    CONVNET_NCCL(ncclAllReduce(data, data, count, ncclFloat32,
                               op == ReduceOp::average ? ncclAvg : ncclSum, nccl_->comm, stream_));
    CONVNET_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CONVNET_CUDA(cudaEventRecord(done, stream_));
    return PendingReduce(std::make_unique<NcclPending>(done, nccl_, device_, compute_));
  }
  int64_t allreduce_max_impl(int64_t value) override { return host_->allreduce_max(value); }
  std::unique_ptr<Communicator> duplicate_impl() override {
    return std::make_unique<NcclCommunicator>(host_->duplicate(), device_, compute_);
  }
  [[noreturn]] void abort_impl(int exit_code) override {
    nccl_->abort();
    host_->abort(exit_code);
  }
  void cancel_impl() override {
    CONVNET_CUDA(cudaSetDevice(device_));
    nccl_->abort();
  }

 private:
  std::unique_ptr<Communicator> host_;
  int device_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<NcclComm> nccl_ = std::make_shared<NcclComm>();
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device,
                                                     cudaStream_t compute_stream) {
  return std::make_unique<NcclCommunicator>(host.duplicate(), device, compute_stream);
}

}  // namespace convnet

// mpi_comm_check: the multi-rank checks of comm/, run under mpirun by ctest
// (tests/CMakeLists.txt: comm.mpi_np2, comm.mpi_np3 and the failure modes).
//
//   mpirun -np N mpi_comm_check check N   every collective and GradientReducer;
//                                         exits non-zero and prints each failure
//   mpirun -np N mpi_comm_check dead-rank     rank 1 _exit(3)s before an allreduce
//   mpirun -np N mpi_comm_check throw-rank    rank 1 throws; the exception leaves the
//                                             communicator's scope (no MPI_Finalize)
//   mpirun -np N mpi_comm_check abort-rank    rank 1 catches an error, calls abort(4)
// In the failure modes the other ranks wait in an allreduce; mpirun must end
// them (ctest checks mpirun's report, under `timeout`).
//
// Tolerances: the reduced values are multiples of 0.25 (or 0.5) far below
// 2^24, so every partial sum is exact in float whatever order MPI sums in;
// the average is that exact sum divided by the rank count in float on both
// sides. Results are therefore compared for exact equality.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/gradient_reducer.h"
#include "comm/mpi_communicator.h"
#include "core/error.h"

namespace convnet {
namespace {

class Checker {
 public:
  explicit Checker(int rank) : rank_(rank) {}
  void expect(bool ok, const std::string& what) {
    if (ok) return;
    ++failures_;
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", rank_, what.c_str());
  }
  int64_t failures() const { return failures_; }

 private:
  int rank_;
  int64_t failures_ = 0;
};

// The first index where two float buffers differ, or -1.
int64_t first_mismatch(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  return -1;
}

std::string mismatch_text(const std::vector<float>& actual, const std::vector<float>& expected) {
  const int64_t i = first_mismatch(actual, expected);
  if (i < 0) return "";
  if (actual.size() != expected.size())
    return detail::concat("size ", actual.size(), " != ", expected.size());
  return detail::concat("element ", i, ": ", actual[i], " != ", expected[i]);
}

void check_topology(Communicator& comm, int expected_size, Checker& check) {
  const int n = comm.size();
  check.expect(comm.describe().rfind("mpi:", 0) == 0, "describe(): " + comm.describe());
  check.expect(expected_size < 0 || n == expected_size,
               detail::concat("size() ", n, " != ", expected_size));
  int64_t rank = comm.rank();
  comm.allreduce(&rank, 1);
  check.expect(rank == int64_t{n} * (n - 1) / 2, "ranks are not 0 .. size-1");
  // mpirun on one machine: every rank is local, in rank order.
  check.expect(comm.local_size() == n && comm.local_rank() == comm.rank(),
               detail::concat("local rank ", comm.local_rank(), " of ", comm.local_size()));
  check.expect(comm.thread_support() == ThreadSupport::multiple,
               "Debian's Open MPI provides MPI_THREAD_MULTIPLE: " + comm.describe());
}

void check_reductions(Communicator& comm, Checker& check) {
  const int n = comm.size();
  const int r = comm.rank();
  const std::size_t count = 100003;
  const float rank_sum = static_cast<float>(n * (n + 1) / 2);  // sum of (r + 1)
  std::vector<float> mine(count), sum(count), average(count);
  for (std::size_t i = 0; i < count; ++i) {
    const float base = static_cast<float>(i % 5) * 0.5f;
    mine[i] = static_cast<float>(r + 1) * base;
    sum[i] = rank_sum * base;
    average[i] = sum[i] / static_cast<float>(n);
  }
  std::vector<float> data = mine;
  comm.allreduce(data.data(), count, ReduceOp::sum);
  check.expect(data == sum, "float sum: " + mismatch_text(data, sum));
  data = mine;
  comm.allreduce(data.data(), count, ReduceOp::average);
  check.expect(data == average, "float average: " + mismatch_text(data, average));

  std::vector<double> d = {0.25 * (r + 1), 1e15 + r};
  comm.allreduce(d.data(), d.size(), ReduceOp::sum);
  check.expect(d[0] == 0.25 * n * (n + 1) / 2 && d[1] == 1e15 * n + n * (n - 1) / 2,
               detail::concat("double sum: ", d[0], ", ", d[1]));
  d = {0.5 * (r + 1)};
  comm.allreduce(d.data(), d.size(), ReduceOp::average);
  check.expect(d[0] == 0.5 * n * (n + 1) / 2 / n, detail::concat("double average: ", d[0]));

  // Counts beyond 2^32 stay exact.
  std::vector<int64_t> counts = {(int64_t{1} << 40) + 3 * r, -r};
  comm.allreduce(counts.data(), counts.size());
  check.expect(counts[0] == (int64_t{n} << 40) + 3 * n * (n - 1) / 2 &&
                   counts[1] == -int64_t{n} * (n - 1) / 2,
               detail::concat("int64 sum: ", counts[0], ", ", counts[1]));

  check.expect(comm.allreduce_max(10 * r - 5) == 10 * (n - 1) - 5, "allreduce_max");
  check.expect(comm.any(r == n - 1), "any(): only the last rank says true");
  check.expect(!comm.any(false), "any(false) on every rank");
  check.expect(comm.any(true), "any(true) on every rank");
}

void check_broadcast(Communicator& comm, Checker& check) {
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<unsigned char> bytes(1000, 0), expected(1000);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      expected[i] = static_cast<unsigned char>((root * 7 + i) & 0xff);
    if (comm.rank() == root) bytes = expected;
    comm.broadcast(bytes.data(), bytes.size(), root);
    check.expect(bytes == expected, detail::concat("broadcast from ", root));
  }
  std::string text(static_cast<std::size_t>(comm.rank()) * 3, 'x');  // lengths differ
  const int root = comm.size() - 1;
  if (comm.rank() == root) text = "from the last rank";
  comm.broadcast(text, root);
  check.expect(text == "from the last rank", "string broadcast: '" + text + "'");
  int64_t value = comm.rank() == 0 ? 1234567890123 : 0;
  comm.broadcast(value, 0);
  check.expect(value == 1234567890123, "value broadcast");
}

void check_async(Communicator& comm, Checker& check) {
  const int n = comm.size();
  const std::size_t count = 300001;
  std::vector<float> a(count, 0.5f * static_cast<float>(comm.rank() + 1));
  std::vector<float> b(count, 2.0f);
  // Two reductions in flight at once; a is driven by test(), b by wait().
  PendingReduce pending_a = comm.allreduce_async(a.data(), count, ReduceOp::sum);
  PendingReduce pending_b = comm.allreduce_async(b.data(), count, ReduceOp::average);
  while (!pending_a.test()) {
  }
  pending_b.wait();
  check.expect(pending_a.done() && pending_b.done(), "handles complete");
  const std::vector<float> sum_a(count, 0.5f * static_cast<float>(n * (n + 1) / 2));
  const std::vector<float> avg_b(count, 2.0f);
  check.expect(a == sum_a, "async sum: " + mismatch_text(a, sum_a));
  check.expect(b == avg_b, "async average: " + mismatch_text(b, avg_b));

  // A duplicate is an independent channel over the same ranks.
  std::unique_ptr<Communicator> copy = comm.duplicate();
  check.expect(copy->size() == n && copy->rank() == comm.rank(), "duplicate's ranks");
  int64_t one = 1;
  copy->allreduce(&one, 1);
  check.expect(one == n, "allreduce on a duplicate");
}

// The gradient of rank r: multiples of 0.25 in [-2, 2] * (r + 1). Written in
// place: a GradientReducer holds the buffer's address.
void fill_gradients(std::vector<float>& g, int rank) {
  for (std::size_t i = 0; i < g.size(); ++i)
    g[i] = static_cast<float>(rank + 1) * static_cast<float>(static_cast<int>(i % 17) - 8) * 0.25f;
}

std::vector<float> expected_average(std::size_t count, int size) {
  std::vector<float> sum(count, 0.0f);
  std::vector<float> g(count);
  for (int r = 0; r < size; ++r) {
    fill_gradients(g, r);
    for (std::size_t i = 0; i < count; ++i) sum[i] += g[i];
  }
  for (float& v : sum) v /= static_cast<float>(size);
  return sum;
}

void check_gradient_reducer(Communicator& comm, Checker& check) {
  struct Case {
    std::size_t count;
    std::size_t bucket_bytes;
  };
  const Case cases[] = {
      {250007, 16 * 1024 + 4},                          // many buckets, short last one
      {250007, 1 << 20},                                // a few buckets
      {250007, GradientReducerOptions{}.bucket_bytes},  // one bucket larger than the buffer
      {37, 4},                                          // one float per bucket
      {0, 1024},                                        // nothing to reduce
  };
  for (const Case& c : cases) {
    const std::vector<float> expected = expected_average(c.count, comm.size());
    std::vector<float> results[2];
    for (const bool overlap : {true, false}) {
      std::vector<float> grads(c.count);
      GradientReducer reducer(comm, grads.data(), grads.size(),
                              {.bucket_bytes = c.bucket_bytes, .overlap = overlap});
      for (int step = 0; step < 2; ++step) {
        fill_gradients(grads, comm.rank());
        reducer.begin_step();
        for (std::size_t done = 0; done < c.count; done += c.count / 7 + 1)
          reducer.mark_ready(done);
        if (step == 1 && comm.thread_support() == ThreadSupport::multiple) {
          // The caller may use the communicator while the reducer's thread works.
          int64_t one = 1;
          comm.allreduce(&one, 1);
          check.expect(one == comm.size(), "allreduce during a reducer step");
        }
        reducer.finish();
        const std::string label =
            detail::concat("reducer count ", c.count, " bucket_bytes ", c.bucket_bytes,
                           overlap ? " overlap" : "", " step ", step, ": ");
        check.expect(grads == expected, label + mismatch_text(grads, expected));
        check.expect(reducer.last_step().buckets.size() == reducer.buckets().size(),
                     label + "bucket statistics");
      }
      results[overlap ? 0 : 1] = grads;
    }
    check.expect(first_mismatch(results[0], results[1]) < 0,
                 detail::concat("overlap on and off differ, count ", c.count));
  }
}

// Buckets start, and finish, while "backward" still runs.
void check_overlap(Communicator& comm, Checker& check) {
  const std::size_t per_bucket = 16384;  // 64 KiB
  const std::size_t count = 4 * per_bucket;
  std::vector<float> grads(count);
  GradientReducer reducer(comm, grads.data(), count, {.bucket_bytes = per_bucket * sizeof(float)});
  const std::vector<float> expected = expected_average(count, comm.size());
  std::size_t launched = 0;
  std::size_t done = 0;
  // Completion before finish() needs every rank's thread to have run within
  // the 30 ms gaps; on a loaded machine try again (all ranks agree on retrying).
  for (int attempt = 0; attempt < 3; ++attempt) {
    fill_gradients(grads, comm.rank());
    comm.barrier();
    reducer.begin_step();
    for (std::size_t k = 1; k <= 3; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // backward of more layers
      reducer.mark_ready(k * per_bucket);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    reducer.finish();
    check.expect(grads == expected, "overlap step: " + mismatch_text(grads, expected));
    const ReduceStepStats& stats = reducer.last_step();
    launched = stats.launched_before_finish();
    done = stats.done_before_finish();
    if (comm.rank() == 0) {
      std::printf("overlap attempt %d: %zu of %zu buckets launched and %zu done before finish()",
                  attempt, launched, stats.buckets.size(), done);
      for (const BucketTiming& b : stats.buckets)
        std::printf(" [%.1f..%.1f ms]", b.launch_s * 1e3, b.done_s * 1e3);
      std::printf(", finish() at %.1f ms blocked %.2f ms\n", stats.finish_called_s * 1e3,
                  stats.exposed_s * 1e3);
    }
    if (!comm.any(done == 0)) break;
  }
  check.expect(launched >= 1, "no bucket was launched before finish()");
  check.expect(done >= 1, "no bucket completed before finish(): no progress during backward");
}

// Every rank's host is gathered (one machine: all this host's name); the
// arrival board carries each rank's newest note (step and phase) to rank 0,
// and only there.
void check_arrivals(Communicator& comm, Checker& check) {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  for (int r = 0; r < comm.size(); ++r)
    check.expect(comm.host_of(r) == name, detail::concat("host_of(", r, ") ", comm.host_of(r)));
  std::unique_ptr<ArrivalBoard> board = comm.make_arrival_board();
  board->arrived(1);
  board->arrived(10 + comm.rank());  // dropped or delivered, the newest wins once sent
  comm.barrier();
  std::vector<Arrival> arrivals;
  // Even ranks are in the data loader of their step, odd ones wait.
  const auto phase_of = [](int r) { return r % 2 == 0 ? StepPhase::data : StepPhase::waiting; };
  for (int attempt = 0; attempt < 200; ++attempt) {  // notes are asynchronous
    board->note(10 + comm.rank(), phase_of(comm.rank()));
    arrivals = board->arrivals();
    bool all = true;
    for (int r = 0; r < static_cast<int>(arrivals.size()); ++r)
      all = all && arrivals[static_cast<std::size_t>(r)].step == 10 + r &&
            arrivals[static_cast<std::size_t>(r)].phase == phase_of(r);
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (comm.rank() != 0) {
    check.expect(arrivals.empty(), "arrivals() outside rank 0");
  } else {
    check.expect(static_cast<int>(arrivals.size()) == comm.size(), "one arrival per rank");
    for (int r = 0; r < static_cast<int>(arrivals.size()); ++r) {
      const Arrival& a = arrivals[static_cast<std::size_t>(r)];
      check.expect(a.step == 10 + r && a.phase == phase_of(r) && a.seconds_ago < 5,
                   detail::concat("rank ", r, " noted step ", a.step, ", ", describe(a.phase)));
      // A rank in the data loader of step 10 + r has not reached its wait.
      check.expect(a.reached(10 + r) == (phase_of(r) == StepPhase::waiting) && a.reached(9 + r),
                   detail::concat("rank ", r, ": reached() of ", describe(a.phase)));
    }
  }
  comm.barrier();
}

int run_checks(int expected_size) {
  std::unique_ptr<Communicator> comm = make_communicator();
  Checker check(comm->rank());
  if (comm->rank() == 0) std::printf("%s\n", comm->describe().c_str());
  check_topology(*comm, expected_size, check);
  check_reductions(*comm, check);
  check_broadcast(*comm, check);
  check_async(*comm, check);
  check_gradient_reducer(*comm, check);
  check_overlap(*comm, check);
  check_arrivals(*comm, check);
  int64_t failures = check.failures();
  comm->allreduce(&failures, 1);
  comm->barrier();
  if (comm->rank() == 0) {
    if (failures == 0)
      std::printf("mpi_comm_check: %d ranks: all checks passed\n", comm->size());
    else
      std::printf("mpi_comm_check: %d ranks: %lld checks failed\n", comm->size(),
                  static_cast<long long>(failures));
  }
  return failures == 0 ? 0 : 1;
}

// Rank 1 fails in one of three ways while the others enter an allreduce that
// can never complete; only the launcher can end them.
int run_failure(const std::string& mode) {
  std::unique_ptr<Communicator> comm = make_communicator();
  comm->barrier();
  if (comm->rank() == 1) {
    std::fprintf(stderr, "[rank 1] failing (%s) before the allreduce\n", mode.c_str());
    if (mode == "dead-rank") _exit(3);
    if (mode == "throw-rank") throw Error("rank 1 gives up (throw-rank)");
    try {
      throw Error("rank 1 gives up (abort-rank)");
    } catch (const Error& e) {
      std::fprintf(stderr, "[rank 1] %s; aborting the job\n", e.what());
      comm->abort(4);
    }
  }
  float value = 1.0f;
  comm->allreduce(&value, 1, ReduceOp::sum);
  std::fprintf(stderr, "[rank %d] the allreduce returned although rank 1 failed\n", comm->rank());
  return 1;
}

}  // namespace
}  // namespace convnet

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  try {
    if (mode == "check") return convnet::run_checks(argc > 2 ? std::atoi(argv[2]) : -1);
    if (mode == "dead-rank" || mode == "throw-rank" || mode == "abort-rank")
      return convnet::run_failure(mode);
    std::fprintf(stderr, "usage: mpi_comm_check [check N | dead-rank | throw-rank | abort-rank]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_comm_check: %s\n", e.what());
    return 1;
  }
}

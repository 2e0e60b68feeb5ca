// The fiber scheduler of cuda_on_host.h: one Boost.Context fiber per thread
// of a block, on a stack its slot keeps from launch to launch, switched at
// barriers (no system call per switch, unlike ucontext).
#include "tests/cuda_on_host/cuda_on_host.h"

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>
#include <cstring>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "core/error.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>  // fiber stacks and shared memory are announced to memcheck
#else
#define VALGRIND_STACK_REGISTER(start, end) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#define VALGRIND_MAKE_MEM_UNDEFINED(start, bytes) ((void)(start), (void)(bytes))
#endif

namespace convnet::cuda_on_host {
namespace {

namespace ctx = boost::context;

constexpr int kWarp = 32;
constexpr size_t kStackBytes = 256 * 1024;

enum class State { ready, at_block_barrier, at_warp_barrier, done };

// Hands a fiber the stack its slot owns (allocated once, freed with the slot).
struct SlotStack {
  char* base;
  ctx::stack_context allocate() {
    ctx::stack_context sc;
    sc.size = kStackBytes;
    sc.sp = base + kStackBytes;
    return sc;
  }
  void deallocate(ctx::stack_context&) noexcept {}
};

// One thread of the block. Members are destroyed bottom-up: a suspended
// `self` unwinds on `stack` before the stack goes.
struct Fiber {
  Fiber() : stack_id(VALGRIND_STACK_REGISTER(stack.get(), stack.get() + kStackBytes)) {}
  ~Fiber() {
    self = ctx::fiber();  // unwinds a suspended thread while its stack is registered
    VALGRIND_STACK_DEREGISTER(stack_id);
  }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  std::unique_ptr<char[]> stack{new char[kStackBytes]};
  unsigned stack_id;
  ctx::fiber self;       // resumed by the scheduler
  ctx::fiber scheduler;  // resumed by the thread to suspend itself
  State state = State::ready;
  Builtins builtins{};
};

struct Grid {
  Order order = Order::forward;
  std::vector<std::unique_ptr<Fiber>> fibers;  // the first `threads` run the block
  int threads = 0;
  std::vector<uint64_t> lanes;                   // shuffle slots, one per thread
  std::vector<std::pair<void*, size_t>> shared;  // registered shared memory
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
  int running = -1;  // fiber index, -1 on the scheduler
  const char* name = "";
};

Grid& grid() {
  static Grid g;
  return g;
}

Fiber& fiber(int t) { return *grid().fibers[static_cast<size_t>(t)]; }

Fiber& current() {
  Grid& g = grid();
  CONVNET_CHECK(g.running >= 0, "a CUDA built-in used outside a kernel launched on the host");
  return fiber(g.running);
}

// Suspends the running thread in `state` until the scheduler releases it.
void wait_in(State state) {
  Fiber& f = current();
  f.state = state;
  f.scheduler = std::move(f.scheduler).resume();
}

bool all_done() {
  Grid& g = grid();
  for (int t = 0; t < g.threads; ++t)
    if (fiber(t).state != State::done) return false;
  return true;
}

// Releases the block barrier once every live thread waits at it.
bool release_block() {
  Grid& g = grid();
  int live = 0, waiting = 0;
  for (int t = 0; t < g.threads; ++t) {
    live += fiber(t).state != State::done;
    waiting += fiber(t).state == State::at_block_barrier;
  }
  if (live == 0 || waiting != live) return false;
  for (int t = 0; t < g.threads; ++t)
    if (fiber(t).state != State::done) fiber(t).state = State::ready;
  return true;
}

// Releases the warp barrier of the warp whose first thread is `first` once
// every live lane waits at it (exited lanes take no part, as on the GPU;
// reading one is an error, see shuffle_bits).
bool release_warp(int first) {
  Grid& g = grid();
  const int last = std::min(g.threads, first + kWarp);
  int live = 0, waiting = 0;
  for (int t = first; t < last; ++t) {
    live += fiber(t).state != State::done;
    waiting += fiber(t).state == State::at_warp_barrier;
  }
  if (waiting == 0 || waiting != live) return false;
  for (int t = first; t < last; ++t)
    if (fiber(t).state == State::at_warp_barrier) fiber(t).state = State::ready;
  return true;
}

// Runs each ready thread of [first, last) once (descending: from the last);
// returns whether any ran.
bool run_ready(int first, int last, bool descending) {
  Grid& g = grid();
  bool ran = false;
  for (int k = first; k < last; ++k) {
    const int t = descending ? first + last - 1 - k : k;
    Fiber& f = fiber(t);
    if (f.state != State::ready) continue;
    g.running = t;
    f.self = std::move(f.self).resume();
    g.running = -1;
    ran = true;
  }
  return ran;
}

void start_threads(const Builtins& block) {
  Grid& g = grid();
  g.threads = static_cast<int>(block.block_dim.x * block.block_dim.y * block.block_dim.z);
  while (static_cast<int>(g.fibers.size()) < g.threads)
    g.fibers.push_back(std::make_unique<Fiber>());
  g.lanes.assign(static_cast<size_t>(g.threads), 0);
  for (int t = 0; t < g.threads; ++t) {
    Fiber& f = fiber(t);
    f.state = State::ready;
    f.builtins = block;
    const unsigned x = block.block_dim.x, y = block.block_dim.y;
    f.builtins.thread = make_uint3(t % x, (t / x) % y, t / (x * y));
    // A fiber left suspended by a failed launch is unwound first: the new one
    // takes the same stack.
    f.self = ctx::fiber();
    f.self = ctx::fiber(std::allocator_arg, SlotStack{f.stack.get()}, [&f](ctx::fiber&& from) {
      f.scheduler = std::move(from);
      Grid& state = grid();
      try {
        (*state.body)();
      } catch (const ctx::detail::forced_unwind&) {
        throw;
      } catch (...) {
        if (!state.error) state.error = std::current_exception();
      }
      f.state = State::done;
      return std::move(f.scheduler);
    });
  }
}

// 0xFF bytes (NaN, -1) that memcheck sees as undefined.
void poison(void* data, size_t bytes) {
  std::memset(data, 0xFF, bytes);
  VALGRIND_MAKE_MEM_UNDEFINED(data, bytes);
}

// Every shared variable registered so far: a block reads nothing a previous
// one left.
void poison_shared_memory() {
  for (const auto& [data, bytes] : grid().shared) poison(data, bytes);
}

void run_block(const Builtins& block) {
  Grid& g = grid();
  poison_shared_memory();
  start_threads(block);
  for (;;) {
    bool progressed = false;
    if (g.order == Order::warp_greedy) {
      // One warp at a time, last warp first, as far as it gets alone.
      for (int first = (g.threads - 1) / kWarp * kWarp; first >= 0; first -= kWarp) {
        const int last = std::min(g.threads, first + kWarp);
        for (;;) {
          const bool ran = run_ready(first, last, false);
          const bool released = release_warp(first);
          if (!ran && !released) break;
          progressed = true;
        }
      }
    } else {
      progressed = run_ready(0, g.threads, g.order == Order::reverse);
      for (int first = 0; first < g.threads; first += kWarp)
        progressed = release_warp(first) || progressed;
    }
    if (all_done()) return;
    progressed = release_block() || progressed;
    CONVNET_CHECK(progressed, g.name, ": threads of block (", block.block.x, ", ", block.block.y,
                  ") wait at different barriers (__syncthreads and a warp shuffle)");
  }
}

}  // namespace

void set_order(Order order) { grid().order = order; }

const Builtins& builtins() { return current().builtins; }

void launch(const char* name, dim3 grid_dim, dim3 block_dim, const std::function<void()>& body) {
  Grid& g = grid();
  CONVNET_CHECK(g.running < 0, name, ": a kernel launched from a kernel");
  const int64_t threads = int64_t{block_dim.x} * block_dim.y * block_dim.z;
  CONVNET_CHECK(threads >= 1 && threads <= 1024, name, ": ", threads,
                " threads per block (1 to 1024)");
  CONVNET_CHECK(grid_dim.x >= 1 && grid_dim.y >= 1 && grid_dim.z >= 1 && grid_dim.y <= 65535 &&
                    grid_dim.z <= 65535,
                name, ": grid (", grid_dim.x, ", ", grid_dim.y, ", ", grid_dim.z, ")");
  g.body = &body;
  g.name = name;
  g.error = nullptr;
  const int64_t blocks = int64_t{grid_dim.x} * grid_dim.y * grid_dim.z;
  for (int64_t k = 0; k < blocks && !g.error; ++k) {
    const int64_t b = g.order == Order::forward ? k : blocks - 1 - k;  // others: last first
    Builtins block{};
    block.block = make_uint3(static_cast<unsigned>(b % grid_dim.x),
                             static_cast<unsigned>((b / grid_dim.x) % grid_dim.y),
                             static_cast<unsigned>(b / (int64_t{grid_dim.x} * grid_dim.y)));
    block.block_dim = block_dim;
    block.grid_dim = grid_dim;
    run_block(block);
  }
  g.body = nullptr;
  if (g.error) std::rethrow_exception(g.error);
}

SharedMemory::SharedMemory(void* data, size_t bytes) {
  // The first thread to reach the declaration: nothing has used it yet.
  grid().shared.emplace_back(data, bytes);
  poison(data, bytes);
}

void sync_threads() { wait_in(State::at_block_barrier); }

uint64_t shuffle_bits(unsigned mask, uint64_t bits, unsigned delta) {
  CONVNET_CHECK(mask == 0xffffffffu, "__shfl_down_sync with a partial mask (not emulated)");
  Grid& g = grid();
  const int t = g.running;
  const int lane = t % kWarp, warp_first = t - lane;
  const int warp_size = std::min(kWarp, g.threads - warp_first);
  g.lanes[static_cast<size_t>(t)] = bits;
  wait_in(State::at_warp_barrier);
  const int source = lane + static_cast<int>(delta);
  uint64_t result = bits;  // a source beyond the warp: the caller's own value
  if (source < kWarp) {
    CONVNET_CHECK(source < warp_size, g.name, ": lane ", lane, " of warp ", warp_first / kWarp,
                  " shuffles from lane ", source, ", which this block of ", g.threads,
                  " threads does not have");
    CONVNET_CHECK(fiber(warp_first + source).state != State::done, g.name, ": lane ", lane,
                  " of warp ", warp_first / kWarp, " shuffles from lane ", source,
                  ", which has exited");
    result = g.lanes[static_cast<size_t>(warp_first + source)];
  }
  wait_in(State::at_warp_barrier);  // every lane has read before the slots are reused
  return result;
}

}  // namespace convnet::cuda_on_host

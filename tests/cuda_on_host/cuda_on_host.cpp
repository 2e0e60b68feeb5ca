// The fiber scheduler of cuda_on_host.h: one Boost.Context fiber per thread
// of a block, on a stack its slot keeps from launch to launch, switched at
// barriers (no system call per switch, unlike ucontext).
#include "tests/cuda_on_host/cuda_on_host.h"

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>
#include <exception>
#include <memory>
#include <vector>

#include "core/error.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>  // the fiber stacks are announced to memcheck
#else
#define VALGRIND_STACK_REGISTER(start, end) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
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
  int64_t launches = 0;
  std::vector<std::unique_ptr<Fiber>> fibers;  // the first `threads` run the block
  int threads = 0;
  std::vector<float> lanes;  // shuffle slots, one per thread
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

// Releases waiting threads whose barrier is complete; returns whether any was.
bool release_barriers(const char* name) {
  Grid& g = grid();
  int live = 0, at_block = 0;
  for (int t = 0; t < g.threads; ++t) {
    live += fiber(t).state != State::done;
    at_block += fiber(t).state == State::at_block_barrier;
  }
  if (live > 0 && at_block == live) {
    for (int t = 0; t < g.threads; ++t)
      if (fiber(t).state != State::done) fiber(t).state = State::ready;
    return true;
  }
  bool released = false;
  for (int first = 0; first < g.threads; first += kWarp) {
    const int last = std::min(g.threads, first + kWarp);
    int waiting = 0, exited = 0;
    for (int t = first; t < last; ++t) {
      waiting += fiber(t).state == State::at_warp_barrier;
      exited += fiber(t).state == State::done;
    }
    CONVNET_CHECK(waiting == 0 || exited == 0, name, ": a warp shuffle in warp ", first / kWarp,
                  " with ", exited, " exited lanes");
    if (waiting == last - first) {
      for (int t = first; t < last; ++t) fiber(t).state = State::ready;
      released = true;
    }
  }
  return released;
}

void start_threads(const Builtins& block) {
  Grid& g = grid();
  g.threads = static_cast<int>(block.block_dim.x * block.block_dim.y * block.block_dim.z);
  while (static_cast<int>(g.fibers.size()) < g.threads)
    g.fibers.push_back(std::make_unique<Fiber>());
  g.lanes.assign(static_cast<size_t>(g.threads), 0.0f);
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

void run_block(const Builtins& block) {
  Grid& g = grid();
  start_threads(block);
  for (;;) {
    bool ran = false;
    for (int k = 0; k < g.threads; ++k) {
      const int t = g.order == Order::forward ? k : g.threads - 1 - k;
      Fiber& f = fiber(t);
      if (f.state != State::ready) continue;
      g.running = t;
      f.self = std::move(f.self).resume();
      g.running = -1;
      ran = true;
    }
    bool all_done = true;
    for (int t = 0; t < g.threads; ++t) all_done = all_done && fiber(t).state == State::done;
    if (all_done) return;
    const bool released = release_barriers(g.name);
    CONVNET_CHECK(released || ran, g.name, ": threads of block (", block.block.x, ", ",
                  block.block.y, ") wait at different barriers (__syncthreads and a warp shuffle)");
  }
}

}  // namespace

void set_order(Order order) { grid().order = order; }

const Builtins& builtins() { return current().builtins; }

int64_t launch_count() { return grid().launches; }

void launch(const char* name, dim3 grid_dim, dim3 block_dim, const std::function<void()>& body) {
  Grid& g = grid();
  CONVNET_CHECK(g.running < 0, name, ": a kernel launched from a kernel");
  const int64_t threads = int64_t{block_dim.x} * block_dim.y * block_dim.z;
  CONVNET_CHECK(threads >= 1 && threads <= 1024, name, ": ", threads,
                " threads per block (1 to 1024)");
  CONVNET_CHECK(grid_dim.x >= 1 && grid_dim.y >= 1 && grid_dim.z >= 1 && grid_dim.y <= 65535 &&
                    grid_dim.z <= 65535,
                name, ": grid (", grid_dim.x, ", ", grid_dim.y, ", ", grid_dim.z, ")");
  ++g.launches;
  g.body = &body;
  g.name = name;
  g.error = nullptr;
  const int64_t blocks = int64_t{grid_dim.x} * grid_dim.y * grid_dim.z;
  for (int64_t k = 0; k < blocks && !g.error; ++k) {
    const int64_t b = g.order == Order::forward ? k : blocks - 1 - k;
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

void sync_threads() { wait_in(State::at_block_barrier); }

float shuffle_down(unsigned mask, float value, unsigned delta) {
  CONVNET_CHECK(mask == 0xffffffffu, "__shfl_down_sync with a partial mask (not emulated)");
  Grid& g = grid();
  const int t = g.running;
  const int lane = t % kWarp, warp_first = t - lane;
  const int warp_size = std::min<int>(kWarp, g.threads - warp_first);
  g.lanes[static_cast<size_t>(t)] = value;
  wait_in(State::at_warp_barrier);
  const float result = lane + static_cast<int>(delta) < warp_size
                           ? g.lanes[static_cast<size_t>(t + static_cast<int>(delta))]
                           : value;
  wait_in(State::at_warp_barrier);  // every lane has read before slots are reused
  return result;
}

}  // namespace convnet::cuda_on_host

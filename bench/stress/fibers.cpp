// patchcall-stress — fibers (fibers.h): stacks, the scheduler loop, the yield point.
#include "fibers.h"

#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "fiber_switch.h"
#include "xorshift.h"

namespace stress {

namespace {

constexpr size_t kStackSize = 128 * 1024;  // the fault handler runs on it too
constexpr size_t kGuard = 4096;            // PROT_NONE below each stack

}  // namespace

struct FiberPool::Fiber {
  FiberPool* pool = nullptr;
  int index = 0;
  void* sp = nullptr;  // saved while parked (pcfiber_switch)
  void* mapping = nullptr;
  patchcall::StackHandle stack;
  CallerStats stats;   // this fiber's counters; the schedulers move deltas into theirs
  CallerFrame frame;
  FaultEscape escape;  // this fiber's siglongjmp target (set on its own stack)
  uint64_t rng = 0;
  int lastThread = -1;
  bool done = false;
};

namespace {

// What a scheduling thread needs to find from a fiber running on it.
struct Scheduler {
  void* sp = nullptr;  // the scheduler's own sp while a fiber runs
  FiberPool::Fiber* running = nullptr;
};
thread_local Scheduler* tlsScheduler = nullptr;

// Out of line on purpose: code after a switch may run on another thread, and the compiler
// may keep the address of a thread_local it computed before the switch.
__attribute__((noinline)) Scheduler* currentScheduler() { return tlsScheduler; }

void nextCountdown(FiberPool::Fiber* f) { f->frame.yieldCountdown = 64 + xorshift(f->rng) % 2048; }

// Parks the running fiber and switches to its thread's scheduler. Returns when some thread
// resumes the fiber.
void yieldToScheduler(FiberPool::Fiber* f) {
  Scheduler* s = currentScheduler();
  (void)patchcall::switchToHomeStack();  // cannot fail: the thread is registered, home is parked
  pcfiber_switch(&f->sp, s->sp);
}

[[noreturn]] void fiberEntry(void* arg) {
  auto* f = static_cast<FiberPool::Fiber*>(arg);
  if (sigsetjmp(f->escape.jump, 1) != 0) ++f->stats.faults;  // back from a fault in JIT code
  runGroups(*f->pool->code(), f->frame, f->escape, f->stats, f->rng, *f->pool->stopFlag());
  f->done = true;
  yieldToScheduler(f);  // never resumed
  std::fprintf(stderr, "patchcall-stress: finished fiber %d was resumed\n", f->index);
  std::abort();
}

}  // namespace

extern "C" void stressFiberYield() {
  Scheduler* s = currentScheduler();
  FiberPool::Fiber* f = s->running;
  nextCountdown(f);
  yieldToScheduler(f);
  // Resumed, maybe on another thread: return straight into the JIT code.
}

FiberPool::FiberPool(patchcall::Runtime& rt, const CallerCode& code, const KeyCells* cells, int fibers,
                     uint64_t seed, const std::atomic<bool>& stop)
    : rt_(rt), code_(code), cells_(cells), seed_(seed), stop_(stop) {
  fibers_.resize(static_cast<size_t>(fibers));
}

FiberPool::~FiberPool() {
  for (auto& f : fibers_) {
    if (f == nullptr || f->mapping == nullptr) continue;
    if (f->stack.valid()) {
      if (patchcall::Status s = rt_.unregisterStack(f->stack); !s) {
        std::fprintf(stderr, "patchcall-stress: fiber %d: %s (stack left mapped)\n", f->index, s.toString().c_str());
        continue;
      }
    }
    munmap(f->mapping, kStackSize + kGuard);
  }
}

bool FiberPool::init(std::string* error) {
  for (size_t i = 0; i < fibers_.size(); ++i) {
    auto f = std::make_unique<Fiber>();
    f->pool = this;
    f->index = static_cast<int>(i);
    f->mapping = mmap(nullptr, kStackSize + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (f->mapping == MAP_FAILED) {
      f->mapping = nullptr;
      *error = "mmap of fiber stack " + std::to_string(i) + " failed";
      return false;
    }
    mprotect(f->mapping, kGuard, PROT_NONE);
    void* lo = static_cast<uint8_t*>(f->mapping) + kGuard;
    patchcall::Result<patchcall::StackHandle> h = rt_.registerStack(lo, kStackSize, "fiber-" + std::to_string(i));
    if (!h) {
      *error = "registerStack: " + h.status().toString();
      fibers_[i] = std::move(f);
      return false;
    }
    f->stack = *h;
    f->frame.cells = cells_;
    f->escape.thread = static_cast<int>(i);
    f->rng = seed_ * 0x9E3779B97F4A7C15ull + i * 0xD1B54A32D192ED03ull + 7;
    nextCountdown(f.get());
    f->sp = pcfiber::init(lo, kStackSize, &fiberEntry, f.get());
    queue_.push_back(f.get());
    fibers_[i] = std::move(f);
  }
  return true;
}

FiberPool::Fiber* FiberPool::pop() {
  std::lock_guard<std::mutex> lock(queueMutex_);  // also hands the fiber's memory over
  if (queue_.empty()) return nullptr;
  Fiber* f = queue_.front();
  queue_.pop_front();
  return f;
}

void FiberPool::push(Fiber* f) {
  std::lock_guard<std::mutex> lock(queueMutex_);
  queue_.push_back(f);
}

void FiberPool::schedule(int index, CallerStats& st) {
  Scheduler sched;
  tlsScheduler = &sched;
  FaultEscape own;  // inJit stays 0: a fault in the scheduler itself is fatal
  own.thread = -1;
  tlsEscape = &own;
  auto wall0 = std::chrono::steady_clock::now();
  uint64_t cpu0 = threadCpuNs();
  auto total = static_cast<int>(fibers_.size());
  std::chrono::steady_clock::time_point drainDeadline{};
  while (finished_.load(std::memory_order_relaxed) < total) {
    patchcall::safepoint();  // between fibers the thread is an ordinary reader
    Fiber* f = pop();
    if (f == nullptr) {
      if (stop_.load()) {
        if (drainDeadline == std::chrono::steady_clock::time_point{}) {
          drainDeadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        } else if (std::chrono::steady_clock::now() > drainDeadline) {
          st.error = "fibers did not finish within 20 s of the stop";
          break;
        }
      }
      std::this_thread::yield();
      continue;
    }
    if (f->lastThread >= 0 && f->lastThread != index) migrations_.fetch_add(1, std::memory_order_relaxed);
    f->lastThread = index;
    uint64_t calls = f->stats.calls.load(std::memory_order_relaxed), failures = f->stats.checkFailures,
             faults = f->stats.faults, byForm[3] = {f->stats.callsByForm[0], f->stats.callsByForm[1], f->stats.callsByForm[2]};
    sched.running = f;
    tlsEscape = &f->escape;
    (void)patchcall::switchStack(f->stack);  // tell patchcall, then switch
    pcfiber_switch(&sched.sp, f->sp);
    tlsEscape = &own;
    sched.running = nullptr;
    switches_.fetch_add(1, std::memory_order_relaxed);
    st.calls.store(st.calls.load(std::memory_order_relaxed) + f->stats.calls.load(std::memory_order_relaxed) - calls,
                   std::memory_order_relaxed);
    for (int i = 0; i < 3; ++i) st.callsByForm[i] += f->stats.callsByForm[i] - byForm[i];
    st.checkFailures += f->stats.checkFailures - failures;
    st.faults += f->stats.faults - faults;
    if (f->done) {
      finished_.fetch_add(1);
    } else {
      push(f);
    }
  }
  st.cpuNs = threadCpuNs() - cpu0;
  st.wallNs = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - wall0).count());
  tlsEscape = nullptr;
  tlsScheduler = nullptr;
}

}  // namespace stress

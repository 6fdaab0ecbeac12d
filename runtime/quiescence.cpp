// patchcall — quiescence domain: registration, safepoints, offline/online (grace periods
// are in grace_period.cpp, stack scans in stacks.cpp).
#include "quiescence.h"

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
#include <new>
#include <thread>

#include "deadline.h"
#include "fork_reset.h"
#include "test_hooks.h"

namespace patchcall {
namespace detail {

constinit thread_local SafepointTls tlsSafepoint;
thread_local const Quiescence* tlsRetireCallbackDomain = nullptr;

namespace {

constexpr uint64_t kStaleCounter = 1;  // never a live grace-period counter (those start at 2)

}  // namespace

ThreadRecord* currentThread() noexcept { return tlsSafepoint.record; }

__attribute__((no_sanitize("address", "thread"))) void ScanSet::scan(uintptr_t lo,
                                                                       uintptr_t hi) const noexcept {
  if (begin.empty() || lo >= hi) return;
  uintptr_t first = begin.front(), last = end.back();
  for (uintptr_t p = lo & ~uintptr_t{7}; p + 8 <= hi; p += 8) {
    uintptr_t v = *reinterpret_cast<const volatile uintptr_t*>(p);
    if (v < first || v >= last) continue;
    auto it = std::upper_bound(begin.begin(), begin.end(), v);
    size_t i = static_cast<size_t>(it - begin.begin());
    if (i != 0 && v < end[i - 1]) hit[i - 1].store(1, std::memory_order_relaxed);
  }
  if (TestHooks* hooks = testHooks(); hooks != nullptr && state.load(std::memory_order_acquire) != kLive) {
    hooks->scansOfRetiredSets.fetch_add(1, std::memory_order_relaxed);
  }
}

Quiescence::Quiescence(Config config, volatile uint8_t* pollFlag)
    : config_(std::move(config)),
      pollFlag_(pollFlag),
      counterBlock_(new std::atomic<uint64_t>(2)),
      gpCounter_(*counterBlock_) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus_ = static_cast<size_t>(CPU_COUNT(&set));
  if (config_.reportUnregistered) {
    try {
      addCheckedDomain(this);
    } catch (...) {
      delete counterBlock_;  // the destructor does not run for a throwing constructor
      throw;
    }
  }
}

Quiescence::~Quiescence() {
  if (config_.reportUnregistered) removeCheckedDomain(this);
  // Under lifetimeMutex(): a thread exiting (or resetting its scope) right now either finished
  // unregistering already or finds domain == nullptr.
  std::lock_guard<std::mutex> lifetime(lifetimeMutex());
  for (ThreadRecord* r : zombies_) releaseRecord(r);
  for (ThreadRecord* r : threads_) {
    r->domain = nullptr;  // a ThreadScope outliving its runtime unregisters as a no-op
    if (config_.diagnostics) {
      config_.diagnostics("patchcall: runtime destroyed while thread '" + std::string(r->name) +
                          "' is still registered; unregister threads first");
    }
    releaseRecord(r);  // the domain's reference; the scope's and the exit hook's remain
  }
  if (threads_.empty()) {
    delete counterBlock_;
  } else {
#if defined(__SANITIZE_ADDRESS__)
    __lsan_ignore_object(counterBlock_);  // leaked on purpose, see quiescence.h
#endif
  }
}

size_t Quiescence::registeredThreads() const {
  std::lock_guard<std::mutex> lock(threadsMutex_);
  return threads_.size();
}

Result<ThreadRecord*> Quiescence::registerThread(std::string_view name) {
  if (tlsSafepoint.record != nullptr) {
    return Status(Error::kInvalidArgument,
                  "thread '" + std::string(tlsSafepoint.record->name) +
                      "' is already registered; a thread belongs to one runtime at a time");
  }
  auto* r = new (std::nothrow) ThreadRecord();
  if (r == nullptr) return Status(Error::kOutOfMemory, "cannot allocate a thread record");
  r->domain = this;
  r->name = MiString(name.data(), name.size());
  r->tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (r->name.empty()) r->name = MiString(("tid-" + std::to_string(r->tid)).c_str());
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* lo = nullptr;
    size_t size = 0;
    pthread_attr_getstack(&attr, &lo, &size);
    pthread_attr_destroy(&attr);
    r->home.lo = reinterpret_cast<uintptr_t>(lo);
    r->home.hi = r->home.lo + size;
  }
  r->home.state.store(kStackRunning, std::memory_order_relaxed);  // published with r (threadsMutex_)
  r->home.runner.store(r->tid, std::memory_order_relaxed);
  if (Status armed = armExitHook(r); !armed) {
    delete r;
    return armed;
  }
  {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    if (threads_.size() >= config_.maxThreads) {
      disarmExitHook(nullptr);
      delete r;
      return Status(Error::kTooManyThreads, "cannot register thread '" + std::string(name) +
                                                "': Options::maxThreads (" +
                                                std::to_string(config_.maxThreads) + ") reached");
    }
    // A new thread holds no references: it starts out stale, so its first safepoint acknowledges.
    r->ctr.store(kStaleCounter, std::memory_order_seq_cst);
    threads_.push_back(r);
  }
  tlsSafepoint = SafepointTls{&gpCounter_, kStaleCounter, r};
  return r;
}

void Quiescence::unregisterThread(ThreadRecord* r) noexcept {
  leaveStacks(r);  // before `dead`: a leader that sees dead (under scanLock) also sees the parked fiber
  lockSpin(r->scanLock);
  r->dead = true;
  r->ctr.store(0, std::memory_order_release);
  unlockSpin(r->scanLock);
  if (tlsSafepoint.record == r) tlsSafepoint = SafepointTls{};
  wakeWaiter();
  {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    threads_.erase(std::find(threads_.begin(), threads_.end(), r));
  }
  if (gpMutex_.try_lock()) {  // no grace period can hold a pointer to r (one in flight drops it)
    if (inFlight_) std::erase(pending_, r);
    releaseRecord(r);
    gpMutex_.unlock();
  } else {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    zombies_.push_back(r);
    haveZombies_.store(true, std::memory_order_release);
  }
}

PATCHCALL_FORK_PATH void Quiescence::afterForkInChild() noexcept {
  resetAfterFork(gpMutex_);  // fork_reset.h: nothing is stored where nothing changed
  resetAfterFork(threadsMutex_);
  ThreadRecord* self = tlsSafepoint.record != nullptr && tlsSafepoint.record->domain == this ? tlsSafepoint.record : nullptr;
  // Other threads' records are left allocated (their scopes and exit hooks, which hold
  // references, do not exist here): a few hundred bytes per thread, once per fork.
  zombies_.clear();  // clear() of an empty vector stores nothing
  storeIfDifferent(haveZombies_, false);
  threads_.clear();
  storeIfDifferent(inFlight_, false);  // its waits were for threads that do not exist here
  pending_.clear();
  if (self != nullptr) {
    threads_.push_back(self);  // capacity is left from the parent: no allocation
    // A parent's waiter may have held it. Stores below only when needed: every page the
    // child writes is a copy-on-write fault (~2 us here) on its way to running.
    storeIfDifferent(self->scanLock, 0);
  }
  uint64_t s = seq_.load(std::memory_order_relaxed);
  if ((s & 1) != 0) {  // did not complete here
    seq_.store(s - 1, std::memory_order_relaxed);
    // The child's own copy of the parent's flag (a private page). Armed only after seq_ turned
    // odd and disarmed before it turns even (grace_period.cpp, both seq_cst), so an even seq_
    // means a disarmed flag and its page is not even read (a fault where never written).
    if (*pollFlag_ != 0) *pollFlag_ = 0;
  }
  storeIfDifferent(activeScan_, nullptr);
  storeIfDifferent(waiting_, 0);
  gpDone_.afterForkInChild();
  stacks_.afterForkInChild(self != nullptr ? self->current.load(std::memory_order_relaxed) : nullptr);
}

void Quiescence::safepointSlow(ThreadRecord* r) noexcept {
  if (r->ctr.load(std::memory_order_relaxed) == 0) return;  // offline: nothing to report
  uint64_t g = gpCounter_.load(std::memory_order_acquire);
  if (r->ctr.load(std::memory_order_relaxed) == g) {
    // Already acknowledged: the poll flag stays armed until every thread has. Scanning now
    // could race with the set being freed the moment the last thread acknowledges.
    tlsSafepoint.seen = g;
    return;
  }
  // Scan before acknowledging (see header). The scan lock lets a finishing grace period
  // wait out a scan that loaded the set just before it was withdrawn (a thread that came
  // back online mid-period scans although the period no longer waits for it).
  lockSpin(r->scanLock);
  if (const ScanSet* set = activeScan_.load(std::memory_order_acquire); set != nullptr) {
    scanCurrent(*set, r, currentStackPointer());  // [sp, hi) of the stack it runs on
  }
  unlockSpin(r->scanLock);
  // seq_cst (xchg): with the waiter's seq_cst store to waiting_, either it sees this
  // acknowledgement on its re-check or we see waiting_ == 1 and wake it (Dekker).
  r->ctr.store(g, std::memory_order_seq_cst);
  tlsSafepoint.seen = g;
  if (waiting_.load(std::memory_order_relaxed) != 0) wakeWaiter();
}

Status Quiescence::offline(ThreadRecord* r) noexcept {
  if (r->ctr.load(std::memory_order_relaxed) == 0) {
    return statusNoexcept(Error::kInvalidArgument, "already offline",
                          [&] { return "thread '" + std::string(r->name) + "' is already offline"; });
  }
  r->offlineSp.store(currentStackPointer(), std::memory_order_relaxed);
  r->ctr.store(0, std::memory_order_seq_cst);  // see safepointSlow
  tlsSafepoint.seen = 0;
  if (waiting_.load(std::memory_order_relaxed) != 0) wakeWaiter();
  return Status::ok();
}

Status Quiescence::online(ThreadRecord* r) noexcept {
  if (r->ctr.load(std::memory_order_relaxed) != 0) {
    return statusNoexcept(Error::kInvalidArgument, "already online",
                          [&] { return "thread '" + std::string(r->name) + "' is already online"; });
  }
  // Coming back online keeps every frame the thread had, so it must not count as quiescent
  // until its next safepoint scans them: publish a stale counter. The scan lock keeps a
  // waiter from scanning this stack while it starts changing.
  lockSpin(r->scanLock);
  r->ctr.store(kStaleCounter, std::memory_order_seq_cst);
  unlockSpin(r->scanLock);
  tlsSafepoint.seen = kStaleCounter;
  return Status::ok();
}

}  // namespace detail

}  // namespace patchcall

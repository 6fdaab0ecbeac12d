// patchcall — quiescence domain: registration, safepoints, grace periods, stack scans.
#include "quiescence.h"

#include <linux/futex.h>
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
#include "test_hooks.h"

namespace patchcall {
namespace detail {

constinit thread_local SafepointTls tlsSafepoint;
thread_local const Quiescence* tlsRetireCallbackDomain = nullptr;

namespace {

constexpr uint64_t kStaleCounter = 1;  // never a live grace-period counter (those start at 2)

long futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, timeout, nullptr, 0);
}

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
}

Quiescence::Quiescence(Config config, volatile uint8_t* pollFlagRw)
    : config_(std::move(config)),
      pollFlag_(pollFlagRw),
      counterBlock_(new std::atomic<uint64_t>(2)),
      gpCounter_(*counterBlock_) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus_ = static_cast<size_t>(CPU_COUNT(&set));
}

Quiescence::~Quiescence() {
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
  if (gpMutex_.try_lock()) {  // no grace period can hold a pointer to r
    releaseRecord(r);
    gpMutex_.unlock();
  } else {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    zombies_.push_back(r);
  }
}

void Quiescence::afterForkInChild(bool codeIsOurs) noexcept {
  new (&gpMutex_) std::timed_mutex();
  new (&threadsMutex_) std::mutex();
  ThreadRecord* self = tlsSafepoint.record != nullptr && tlsSafepoint.record->domain == this ? tlsSafepoint.record : nullptr;
  // Other threads' records are left allocated (their scopes and exit hooks, which hold
  // references, do not exist here): a few hundred bytes per thread, once per fork.
  zombies_.clear();
  threads_.clear();
  if (self != nullptr) {
    threads_.push_back(self);  // capacity is left from the parent: no allocation
    self->scanLock.store(0, std::memory_order_relaxed);  // a parent's waiter may have held it
  }
  uint64_t s = seq_.load(std::memory_order_relaxed);
  if ((s & 1) != 0) seq_.store(s - 1, std::memory_order_relaxed);  // did not complete here
  activeScan_.store(nullptr, std::memory_order_relaxed);
  waiting_.store(0, std::memory_order_relaxed);
  followers_.store(0, std::memory_order_relaxed);
  if (codeIsOurs) *pollFlag_ = 0;  // else the byte may still be the parent's
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

void Quiescence::setScanSet(const ScanSet* set) {
  std::lock_guard<std::timed_mutex> lock(gpMutex_);
  pendingScan_ = set;
}

void Quiescence::announceCompletion() noexcept {
  gpDone_.fetch_add(1, std::memory_order_seq_cst);
  // Dekker with the follower (followers_++ then FUTEX_WAIT checks gpDone_): a follower we do
  // not see here has not slept yet and will find gpDone_ changed. No syscall without one.
  if (followers_.load(std::memory_order_seq_cst) != 0) futex(&gpDone_, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
}

void Quiescence::wakeWaiter() noexcept {
  if (waiting_.exchange(0, std::memory_order_relaxed) != 0) {
    futex(&waiting_, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
  }
}

bool Quiescence::threadQuiescent(ThreadRecord* r, uint64_t target) noexcept {
  uint64_t c = r->ctr.load(std::memory_order_acquire);
  if (c == target) return true;
  if (c != 0) return false;
  // Offline (or gone): its frames cannot change until it comes online, which takes the lock.
  lockSpin(r->scanLock);
  bool quiescent = r->dead || r->ctr.load(std::memory_order_acquire) == 0;
  if (!r->dead && quiescent) {
    if (const ScanSet* set = activeScan_.load(std::memory_order_relaxed)) {
      // Its current stack from where it went offline (or, after an offline switchStack, from
      // the incoming stack's saved sp): both written under the lock we hold.
      scanCurrent(*set, r, r->offlineSp.load(std::memory_order_relaxed));
    }
  }
  unlockSpin(r->scanLock);
  return quiescent;
}

std::string Quiescence::describeStuck(ThreadRecord* r, std::chrono::steady_clock::duration stuck) const {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(stuck).count();
  return "patchcall: thread '" + std::string(r->name) + "' (tid " + std::to_string(r->tid) +
         ") has not passed a safepoint for " + std::to_string(ms) + " ms (grace period " +
         std::to_string(gpCounter_.load()) + "); it must call safepoint() or go offline";
}

Status Quiescence::waitFor(uint64_t snap, std::chrono::milliseconds deadline) {
  if (tlsRetireCallbackDomain == this) {
    return Status(Error::kWouldDeadlock,
                  "synchronize() called from inside a retire callback: the callback runs after a "
                  "grace period and must not wait for another");
  }
  if (completed(snap)) return Status::ok();
  auto end = deadlineAfter(deadline);
  // A registered, online caller is quiescent while it waits: step offline for the duration.
  ThreadRecord* self = tlsSafepoint.record;
  bool stepOffline = self != nullptr && self->domain == this && self->ctr.load() != 0;
  if (stepOffline) (void)offline(self);
  // One leader runs grace periods; the others sleep until one completes and re-check, so a
  // caller whose grace period is done returns at once instead of queueing on the mutex.
  Status status;
  while (!completed(snap)) {
    if (std::unique_lock<std::timed_mutex> leader(gpMutex_, std::try_to_lock); leader.owns_lock()) {
      while (status.isOk() && !completed(snap)) status = runGracePeriod(end);
      {
        std::lock_guard<std::mutex> lock(threadsMutex_);
        for (ThreadRecord* z : zombies_) releaseRecord(z);
        zombies_.clear();
      }
      leader.unlock();
      // A follower that lost the try_lock race may be asleep on the last completion; wake
      // it now that the mutex is free so it can lead its own grace period at once.
      announceCompletion();
      break;
    }
    uint32_t seen = gpDone_.load(std::memory_order_acquire);
    if (completed(snap)) break;
    auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      status = Status(Error::kTimeout, "patchcall: timed out waiting for another caller's grace period");
      break;
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(10)))
                  .count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    followers_.fetch_add(1, std::memory_order_seq_cst);
    futex(&gpDone_, FUTEX_WAIT_PRIVATE, seen, &ts);
    followers_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (stepOffline) (void)online(self);
  return status;
}

Status Quiescence::runGracePeriod(std::chrono::steady_clock::time_point end) {
  using Clock = std::chrono::steady_clock;
  MiVector<ThreadRecord*> pending;  // copied before anything is armed: may run out of memory
  {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    pending = threads_;
    // Published under threadsMutex_: a thread registered after this copy is not waited for,
    // but its registration takes the mutex afterwards, so every switchStack it makes sees
    // the set and scans both stacks (the argument in stacks.cpp relies on it).
    activeScan_.store(pendingScan_, std::memory_order_release);
  }
  seq_.fetch_add(1, std::memory_order_seq_cst);  // odd: running
  uint64_t target = gpCounter_.fetch_add(1, std::memory_order_seq_cst) + 1;
  *pollFlag_ = 1;  // JIT polls now take their slow path
  auto start = Clock::now(), spinUntil = start + config_.spin;
  Status status;
  while (true) {
    std::erase_if(pending, [&](ThreadRecord* r) { return threadQuiescent(r, target); });
    if (pending.empty()) break;
    auto now = Clock::now();
    if (now >= end) {
      try {
        std::string msg;
        for (ThreadRecord* r : pending) {
          if (!msg.empty()) msg += '\n';
          msg += describeStuck(r, now - start);
        }
        if (config_.diagnostics) config_.diagnostics(msg);
        status = Status(Error::kTimeout, msg);
      } catch (const std::bad_alloc&) {
        status = Status(Error::kTimeout, std::string());  // the grace period must still be disarmed
      }
      break;
    }
    // Spin only while every pending thread can run beside us; otherwise spinning just
    // takes the CPU a pending reader needs to reach its safepoint.
    if (now < spinUntil && pending.size() < cpus_) {
      cpuRelax();  // one pause per check: on AMD a pause is ~65 cycles already
      continue;
    }
    // Sleep. Readers acknowledge with a seq_cst store and then read waiting_, so after
    // this seq_cst store either the re-check sees them or they wake us.
    waiting_.store(1, std::memory_order_seq_cst);
    std::erase_if(pending, [&](ThreadRecord* r) { return threadQuiescent(r, target); });
    if (pending.empty()) break;
    auto left = std::min<Clock::duration>(end - Clock::now(), std::chrono::milliseconds(10));
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    if (ns > 0) {
      timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      futex(&waiting_, FUTEX_WAIT_PRIVATE, 1, &ts);
    }
  }
  waiting_.store(0, std::memory_order_relaxed);
  // Every thread has acknowledged (or is offline and scanned): now the parked stacks.
  if (const ScanSet* set = activeScan_.load(std::memory_order_relaxed); set != nullptr && status.isOk()) {
    scanParkedStacks(*set);
  }
  *pollFlag_ = 0;
  if (activeScan_.exchange(nullptr, std::memory_order_seq_cst) != nullptr) {
    // Wait out any scan still using the set: after this, nobody can see it (its owner may
    // free it as soon as we return).
    std::lock_guard<std::mutex> lock(threadsMutex_);
    for (ThreadRecord* r : threads_) {
      lockSpin(r->scanLock);
      unlockSpin(r->scanLock);
    }
  }
  if (status.isOk()) {
    seq_.fetch_add(1, std::memory_order_seq_cst);  // even: completed
    gracePeriods_.fetch_add(1, std::memory_order_relaxed);
  } else {
    seq_.fetch_sub(1, std::memory_order_seq_cst);  // not completed: back to idle
  }
  announceCompletion();  // followers re-check (and may lead)
  return status;
}

}  // namespace detail

}  // namespace patchcall

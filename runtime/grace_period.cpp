// patchcall — grace periods: the blocking leader/follower wait (waitFor), the steps a grace
// period is made of (begin, check, finish), and the polled, non-blocking form that lets a
// grace period stay in flight between calls (tryAdvance, cookies). Registration, the reader
// side and offline/online are in quiescence.cpp; stack scans in stacks.cpp.
//
// One grace period at a time, under gpMutex_. A blocking leader holds it for the whole
// period; tryAdvance holds it only for one step and leaves the period in flight (pending_,
// target_), which the next step or a blocking leader continues. So gpMutex_ being free no
// longer means "no grace period runs": unregisterThread drops a record from pending_, and
// setScanSet withdraws a set an in-flight period still carries.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <new>

#include "deadline.h"
#include "quiescence.h"
#include "test_hooks.h"

namespace patchcall::detail {

namespace {

long futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, timeout, nullptr, 0);
}

}  // namespace

Status Quiescence::publishBefore(bool mayWait) noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->skipPublishBeforeGracePeriod.load()) return Status::ok();
  if (!mayWait) return publication_->tryPublishAll() ? Status::ok() : Status(Error::kTimeout, std::string());
  try {
    return publication_->publishAll(std::chrono::steady_clock::now() + config_.deadline);
  } catch (const std::bad_alloc&) {  // the error message could not be built
    return Status(Error::kSystemError, std::string());
  }
}

void Quiescence::setScanSet(const ScanSet* set) {
  std::lock_guard<std::timed_mutex> lock(gpMutex_);
  pendingScan_ = set;
  // A grace period left in flight by tryAdvance may still carry the old set, which its owner
  // frees once this returns. Nobody relies on that grace period for it (the owner only
  // replaces a set after the grace period that carried it completed): withdraw it.
  const ScanSet* active = activeScan_.load(std::memory_order_relaxed);
  if (inFlight_ && active != nullptr && active != set) withdrawScanLocked();
}

void Quiescence::announceCompletion() noexcept {
  gpDone_.announce();
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
  // Offline (or gone) and no stack to scan: nothing to hold still.
  if (activeScan_.load(std::memory_order_relaxed) == nullptr) return true;
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
  LazyDeadline end(deadline);
  QuiescentWhile quiescent(*this);  // a registered, online caller is quiescent while it waits
  // One leader runs grace periods; the others sleep until one completes and re-check, so a
  // caller whose grace period is done returns at once instead of queueing on the mutex.
  Status status;
  while (!completed(snap)) {
    if (std::unique_lock<std::timed_mutex> leader(gpMutex_, std::try_to_lock); leader.owns_lock()) {
      while (status.isOk() && !completed(snap)) status = runGracePeriod(end);
      releaseZombiesLocked();
      leader.unlock();
      // A follower that lost the try_lock race may be asleep on the last completion; wake
      // it now that the mutex is free so it can lead its own grace period at once.
      announceCompletion();
      break;
    }
    uint32_t seen = gpDone_.current();
    if (completed(snap)) break;
    if (!gpDone_.wait(seen, end.get())) {
      status = Status(Error::kTimeout, "patchcall: timed out waiting for another caller's grace period");
      break;
    }
  }
  return status;
}

QuiescentWhile::QuiescentWhile(Quiescence& q) noexcept : q_(q) {
  ThreadRecord* self = tlsSafepoint.record;
  if (self != nullptr && self->domain == &q && self->ctr.load(std::memory_order_relaxed) != 0) {
    if (q.offline(self).isOk()) self_ = self;
  }
}

QuiescentWhile::~QuiescentWhile() {
  if (self_ != nullptr) (void)q_.online(self_);
}

void Quiescence::releaseZombiesLocked() noexcept {
  // A zombie queued after this load is released by the next grace period's leader.
  if (!haveZombies_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(threadsMutex_);
  for (ThreadRecord* z : zombies_) releaseRecord(z);
  zombies_.clear();
  haveZombies_.store(false, std::memory_order_relaxed);
}

void Quiescence::beginLocked() {
  {
    std::lock_guard<std::mutex> lock(threadsMutex_);
    pending_ = threads_;  // the only allocation: before anything is armed
    // Published under threadsMutex_: a thread registered after this copy is not waited for,
    // but its registration takes the mutex afterwards, so every switchStack it makes sees
    // the set and scans both stacks (the argument in stacks.cpp relies on it).
    activeScan_.store(pendingScan_, std::memory_order_release);
  }
  seq_.fetch_add(1, std::memory_order_seq_cst);  // odd: running
  target_ = gpCounter_.fetch_add(1, std::memory_order_seq_cst) + 1;
  *pollFlag_ = 1;  // JIT polls now take their slow path
  gpStart_ = {};
  stuckReported_ = false;
  inFlight_ = true;
}

bool Quiescence::checkLocked() noexcept {
  std::erase_if(pending_, [&](ThreadRecord* r) { return threadQuiescent(r, target_); });
  return pending_.empty();
}

void Quiescence::withdrawScanLocked() noexcept {
  if (activeScan_.exchange(nullptr, std::memory_order_seq_cst) == nullptr) return;
  // Wait out any scan still using the set: after this, nobody can see it (its owner may
  // free it as soon as we return).
  std::lock_guard<std::mutex> lock(threadsMutex_);
  for (ThreadRecord* r : threads_) {
    lockSpin(r->scanLock);
    unlockSpin(r->scanLock);
  }
}

void Quiescence::finishLocked(bool done) noexcept {
  waiting_.store(0, std::memory_order_relaxed);
  // Every thread has acknowledged (or is offline and scanned): now the parked stacks.
  if (const ScanSet* set = activeScan_.load(std::memory_order_relaxed); set != nullptr && done) {
    scanParkedStacks(*set);
  }
  *pollFlag_ = 0;
  withdrawScanLocked();
  if (done) {
    seq_.fetch_add(1, std::memory_order_seq_cst);  // even: completed
    gracePeriods_.fetch_add(1, std::memory_order_relaxed);
  } else {
    seq_.fetch_sub(1, std::memory_order_seq_cst);  // not completed: back to idle
  }
  inFlight_ = false;
  pending_.clear();
  announceCompletion();  // followers re-check (and may lead)
}

Status Quiescence::runGracePeriod(LazyDeadline& deadline) {
  using Clock = std::chrono::steady_clock;
  if (!inFlight_) {  // else continue the one tryAdvance started
    if (publication_ != nullptr && publication_->pending()) PATCHCALL_TRY(publishBefore(true));
    beginLocked();
  }
  Clock::time_point spinUntil{}, end{};
  Status status;
  while (true) {
    if (checkLocked()) break;
    auto now = Clock::now();
    if (spinUntil == Clock::time_point{}) {  // the first check failed: from here on, time counts
      spinUntil = now + config_.spin;
      end = deadline.get();
      if (gpStart_ == Clock::time_point{}) gpStart_ = now;
    }
    if (now >= end) {
      try {
        std::string msg;
        for (ThreadRecord* r : pending_) {
          if (!msg.empty()) msg += '\n';
          msg += describeStuck(r, now - gpStart_);
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
    if (now < spinUntil && pending_.size() < cpus_) {
      cpuRelax();  // one pause per check: on AMD a pause is ~65 cycles already
      continue;
    }
    // Sleep. Readers acknowledge with a seq_cst store and then read waiting_, so after
    // this seq_cst store either the re-check sees them or they wake us.
    waiting_.store(1, std::memory_order_seq_cst);
    if (checkLocked()) break;
    auto left = std::min<Clock::duration>(end - Clock::now(), std::chrono::milliseconds(10));
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    if (ns > 0) {
      timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      futex(&waiting_, FUTEX_WAIT_PRIVATE, 1, &ts);
    }
  }
  finishLocked(status.isOk());
  return status;
}

uint64_t Quiescence::cookie() noexcept {
  uint64_t s = snapshot();
  uint64_t floor = cookieFloor_.load(std::memory_order_relaxed);
  while (floor < s && !cookieFloor_.compare_exchange_weak(floor, s, std::memory_order_relaxed)) {
  }
  return std::max(s, floor);
}

void Quiescence::request(uint64_t snap) noexcept {
  uint64_t r = requested_.load(std::memory_order_relaxed);
  while (r < snap && !requested_.compare_exchange_weak(r, snap, std::memory_order_relaxed)) {
  }
}

bool Quiescence::tryAdvance() noexcept {
  std::unique_lock<std::timed_mutex> lock(gpMutex_, std::try_to_lock);
  if (!lock.owns_lock()) return false;  // a leader is running one: it makes the progress
  bool done = false;
  if (inFlight_ && checkLocked()) {
    finishLocked(true);
    done = true;
  }
  if (!inFlight_ && !completed(requested_.load(std::memory_order_relaxed))) {
    try {
      if (publication_ != nullptr && publication_->pending() && !publishBefore(false).isOk()) return done;  // retried later
      beginLocked();
    } catch (const std::bad_alloc&) {  // nothing armed: a later step retries
      return done;
    }
    if (checkLocked()) {  // nobody online: it completes at once
      finishLocked(true);
      done = true;
    }
  }
  // Bounded in the sense of invariant 5: a grace period nobody waits for still names a
  // thread that holds it up, once, after the default deadline.
  if (inFlight_ && !stuckReported_) {
    auto now = std::chrono::steady_clock::now();
    if (gpStart_ == std::chrono::steady_clock::time_point{}) gpStart_ = now;  // its first step left it pending
    if (now - gpStart_ >= config_.deadline) {
      stuckReported_ = true;
      try {
        for (ThreadRecord* r : pending_) {
          if (config_.diagnostics) config_.diagnostics(describeStuck(r, now - gpStart_));
        }
      } catch (...) {  // out of memory, or a throwing sink: the step matters more
      }
    }
  }
  releaseZombiesLocked();
  return done;
}

std::string Quiescence::describeLaggards() const {
  if ((seq_.load(std::memory_order_acquire) & 1) == 0) return {};  // no grace period runs
  uint64_t g = gpCounter_.load(std::memory_order_acquire);
  std::string out;
  std::lock_guard<std::mutex> lock(threadsMutex_);
  for (ThreadRecord* r : threads_) {
    uint64_t c = r->ctr.load(std::memory_order_acquire);
    if (c == 0 || c == g) continue;
    if (!out.empty()) out += "; ";
    out += "thread '" + std::string(r->name) + "' (tid " + std::to_string(r->tid) +
           ") has not passed a safepoint in grace period " + std::to_string(g);
  }
  return out;
}

}  // namespace patchcall::detail

// patchcall — the quiescence domain (QSBR, in the style of liburcu's urcu-qsbr).
//
// Each registered thread publishes `ctr`: 0 while offline, otherwise the grace-period
// counter it last observed at a safepoint. A grace period bumps the counter and waits until
// every online thread has published the new value. The reader fast path has no fence and no
// atomic RMW; only the slow path (once per grace period per thread) acknowledges with a
// seq_cst store, which lets the waiter sleep on a futex without missing the wakeup.
//
// Blob reclamation rides on grace periods: a ScanSet of retired code ranges is published
// with the new counter, and every thread checks its own stack for addresses inside those
// ranges before it acknowledges (offline threads are scanned by the waiter). "Its own stack"
// is the stack it currently runs on (ThreadRecord::current); parked fiber stacks are scanned
// by the leader once per such grace period, and by switchStack while one runs (stacks.h).
// Threads that exit registered are unregistered by a pthread-key hook (thread_scope.cpp).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "completion_event.h"
#include "deadline.h"
#include "metadata.h"
#include "publication.h"
#include "scan_set.h"
#include "stacks.h"
#include "thread_record.h"
#include "patchcall/quiescence.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class Quiescence {
 public:
  struct Config {
    std::chrono::milliseconds deadline;
    std::chrono::microseconds spin;
    uint32_t maxThreads;
    std::function<void(const std::string&)> diagnostics;
    bool reportUnregistered = false;  // Options::reportUnregisteredThreads
  };
  Quiescence(Config config, volatile uint8_t* pollFlag);
  ~Quiescence();

  Result<ThreadRecord*> registerThread(std::string_view name);
  void unregisterThread(ThreadRecord* record) noexcept;
  // The exit hook: reports the thread by name, then unregisters it (lifetimeMutex() held).
  void unregisterAtExit(ThreadRecord* record) noexcept;
  void safepointSlow(ThreadRecord* record) noexcept;
  // Checked mode (thread_scope.cpp): `what` ran on an unregistered thread; once per thread.
  static void reportUnregistered(const char* what) noexcept;
  Status offline(ThreadRecord* record) noexcept;
  Status online(ThreadRecord* record) noexcept;

  // Grace-period sequence, as Linux's rcu_seq: even = idle, odd = a grace period running.
  // snapshot() names the completion value of a full grace period that starts after the call.
  uint64_t snapshot() const noexcept { return (seq_.load(std::memory_order_acquire) + 3) & ~uint64_t{1}; }
  bool completed(uint64_t snap) const noexcept { return seq_.load(std::memory_order_acquire) >= snap; }
  // Runs grace periods until `snap` has completed; concurrent callers share them.
  Status waitFor(uint64_t snap, std::chrono::milliseconds deadline);

  // Polled grace periods (Runtime::gracePeriodState and friends). A cookie is a snapshot()
  // that never decreases (a failed grace period rolls seq_ back; the floor keeps cookies
  // monotonic, at worst one grace period conservative).
  uint64_t cookie() noexcept;
  // Asks for `snap` to complete without waiting: the next non-blocking step starts its grace
  // period. Steps are taken by tryAdvance (poll, start, elapsed) or by a blocking waiter.
  void request(uint64_t snap) noexcept;
  uint64_t requested() const noexcept { return requested_.load(std::memory_order_relaxed); }
  // One non-blocking step: completes the grace period in flight if every thread it waits
  // for is quiescent now, and starts the requested one if none is in flight. Never waits
  // (try_lock; one pass over the registered threads). True if a grace period completed.
  bool tryAdvance() noexcept;
  // Online threads that have not acknowledged the running grace period ("" if none runs).
  std::string describeLaggards() const;
  Status synchronize(std::chrono::milliseconds deadline) { return waitFor(snapshot(), deadline); }
  // Stack-scan set for grace periods started after this call (nullptr to stop scanning).
  void setScanSet(const ScanSet* set);
  // Every grace period starts with the runtime's deferred code writes published (gpMutex_
  // held; publishing never takes the text mutex): a blocking leader waits for the sync and
  // fails with its error, a non-blocking step starts no grace period while a sync is in flight.
  void setPublication(Publication* publication) noexcept { publication_ = publication; }

  // Stacks (stacks.cpp).
  StackTable& stacks() noexcept { return stacks_; }
  Status switchStack(ThreadRecord* r, StackHandle to) noexcept;

  const std::atomic<uint64_t>& counter() const noexcept { return gpCounter_; }
  std::chrono::milliseconds defaultDeadline() const noexcept { return config_.deadline; }
  uint64_t gracePeriods() const noexcept { return gracePeriods_.load(std::memory_order_relaxed); }
  size_t registeredThreads() const;

  // fork(), in the child: only the forking thread exists there. Drops every other thread's
  // record, abandons a grace period that was running in the parent (its leader is gone) and
  // resets the locks and futex words other threads may have held.
  void afterForkInChild() noexcept;

 private:
  // A grace period may stay in flight between calls (started by tryAdvance): begin, check
  // and finish are its steps, each under gpMutex_; a blocking leader continues it.
  Status runGracePeriod(LazyDeadline& deadline);
  void beginLocked();   // may throw std::bad_alloc, before anything is armed
  bool checkLocked() noexcept;  // drops quiescent threads from pending_; true when none is left
  void finishLocked(bool completed) noexcept;
  void withdrawScanLocked() noexcept;
  void releaseZombiesLocked() noexcept;
  bool threadQuiescent(ThreadRecord* r, uint64_t target) noexcept;
  std::string describeStuck(ThreadRecord* r, std::chrono::steady_clock::duration stuck) const;
  // stacks.cpp: scans r's current stack from sp; a foreign sp pins all and is reported once.
  void scanCurrent(const ScanSet& set, ThreadRecord* r, uintptr_t sp) noexcept;
  void reportUnknownStack(ThreadRecord* r, uintptr_t sp, const StackRecord& known) noexcept;
  void scanParkedStacks(const ScanSet& set) noexcept;  // the leader's pass, before withdrawal
  void leaveStacks(ThreadRecord* r) noexcept;          // unregisterThread: park/free its stacks
  void wakeWaiter() noexcept;
  void announceCompletion() noexcept;

  Config config_;
  Publication* publication_ = nullptr;
  Status publishBefore(bool mayWait) noexcept;  // grace_period.cpp
  size_t cpus_ = 1;  // CPUs this process may run on (spin policy)
  volatile uint8_t* pollFlag_;  // the byte JIT polls compare against zero (private memory: CodeArena::pollFlag)

  // Heap-allocated and leaked (8 bytes) if threads are still registered at destruction, so
  // their inline safepoint() never reads freed memory.
  std::atomic<uint64_t>* counterBlock_;
  std::atomic<uint64_t>& gpCounter_;
  std::atomic<const ScanSet*> activeScan_{nullptr};
  alignas(64) std::atomic<uint32_t> waiting_{0};  // futex word
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> gracePeriods_{0};
  CompletionEvent gpDone_;  // announced as each grace period ends (followers sleep on it)

  std::timed_mutex gpMutex_;       // one grace period at a time
  const ScanSet* pendingScan_ = nullptr;  // under gpMutex_
  // The grace period in flight (under gpMutex_).
  bool inFlight_ = false;
  bool stuckReported_ = false;
  uint64_t target_ = 0;
  std::chrono::steady_clock::time_point gpStart_;  // taken at its first failed check (zero before)
  MiVector<ThreadRecord*> pending_;
  std::atomic<uint64_t> requested_{0};    // highest snap asked for without waiting
  std::atomic<uint64_t> cookieFloor_{0};  // highest cookie handed out
  mutable std::mutex threadsMutex_;
  MiVector<ThreadRecord*> threads_;
  MiVector<ThreadRecord*> zombies_;  // unregistered, freed when no grace period can see them
  std::atomic<bool> haveZombies_{false};  // !zombies_.empty(), readable without threadsMutex_
  StackTable stacks_;
};

// While it lives, the calling thread - if registered with `q` and online - is offline, so
// nothing it waits on (a lock, a grace period) can be held up by the thread itself.
class QuiescentWhile {
 public:
  explicit QuiescentWhile(Quiescence& q) noexcept;
  ~QuiescentWhile();
  QuiescentWhile(const QuiescentWhile&) = delete;
  QuiescentWhile& operator=(const QuiescentWhile&) = delete;

 private:
  Quiescence& q_;
  ThreadRecord* self_ = nullptr;
};

// The calling thread's record, if it is registered (any runtime).
ThreadRecord* currentThread() noexcept;
// The domain whose retire callback runs on this thread (nullptr: none): that domain's
// synchronize() and barrier() would deadlock there; another runtime's are fine.
extern thread_local const Quiescence* tlsRetireCallbackDomain;

// True when safepointSlow() has work for the calling thread: the check safepoint() inlines
// (the grace-period counter moved since the thread last reported), or a test hook is set.
// The safepoint stub calls it before it saves any vector state, so it is compiled for
// general registers only: a poll of a thread that already acknowledged (the flag stays armed
// until every thread has) costs no XSAVE/XRSTOR. Caveat: inside a shared object the TLS read
// is a __tls_get_addr call, whose rare slow path (after a dlopen changed the TLS generation)
// is ordinary C code; executables get it relaxed to an fs: load.
bool safepointPending() noexcept;

}  // namespace patchcall::detail

// patchcall — QSBR quiescence: thread registration, safepoints, offline regions.
//
// A registered thread announces a quiescent state with safepoint() (JIT code does it through
// the poll emitted by jit::emitSafepointPoll). Runtime::synchronize() returns once every
// registered, online thread has passed a safepoint after it began. A thread goes offline
// (OfflineScope) around blocking calls so it never holds up a grace period.
#pragma once

#include <atomic>
#include <cstdint>

#include "patchcall/status.h"

namespace patchcall {

namespace detail {
struct ThreadRecord;
// Per-thread view of the domain, kept in TLS so the fast path is two loads and a compare.
struct SafepointTls {
  const std::atomic<uint64_t>* gpCounter = nullptr;  // the domain's grace-period counter
  uint64_t seen = 0;                                 // the last counter value this thread reported
  ThreadRecord* record = nullptr;
};
extern thread_local SafepointTls tlsSafepoint;
void safepointSlow() noexcept;
}  // namespace detail

// Announce a quiescent state: the caller holds no reference to code or data retired before
// this point. Fast path: no atomic read-modify-write, no fence. Unregistered threads: no-op.
inline void safepoint() noexcept {
  detail::SafepointTls& t = detail::tlsSafepoint;
  if (t.gpCounter != nullptr && t.gpCounter->load(std::memory_order_relaxed) != t.seen) {
    detail::safepointSlow();
  }
}

// Leave / re-enter the read side around a blocking call. Errors: kNotRegistered,
// kInvalidArgument (already offline / already online).
Status goOffline() noexcept;
Status goOnline() noexcept;
bool isThreadRegistered() noexcept;

// RAII offline region for the calling (registered) thread; a no-op for unregistered threads.
class OfflineScope {
 public:
  OfflineScope() noexcept : active_(goOffline().isOk()) {}
  ~OfflineScope() {
    if (active_) (void)goOnline();
  }
  OfflineScope(const OfflineScope&) = delete;
  OfflineScope& operator=(const OfflineScope&) = delete;

 private:
  bool active_;
};

class Runtime;

// RAII registration of the calling thread with a Runtime's quiescence domain
// (Runtime::registerThread). A thread is registered with at most one runtime at a time.
//
// Thread exit: a thread that ends while still registered (its scope never reset, e.g. kept
// in a heap object) is unregistered on its way out (a pthread key destructor, after every
// thread_local destructor); the diagnostic sink gets one message naming it, and no grace
// period waits for it or scans its stack afterwards. Its scope stays valid: active() turns
// false and destroying it, on any thread, only frees the record.
class ThreadScope {
 public:
  ThreadScope() = default;
  ThreadScope(ThreadScope&& other) noexcept : record_(other.record_) { other.record_ = nullptr; }
  ThreadScope& operator=(ThreadScope&& other) noexcept;
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
  ~ThreadScope() { reset(); }
  // Unregister now. On the registering thread this ends the registration; on another thread
  // (or after the runtime or the thread is gone) it only drops the handle: a registration
  // whose thread is alive then ends when that thread exits.
  void reset() noexcept;
  // Holds a registration whose thread has not exited.
  bool active() const noexcept;

 private:
  friend class Runtime;
  explicit ThreadScope(detail::ThreadRecord* r) : record_(r) {}
  detail::ThreadRecord* record_ = nullptr;
};

}  // namespace patchcall

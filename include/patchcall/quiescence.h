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
// What an unregistered thread's safepoint() reads: 0, or 1 while some runtime has
// Options::reportUnregisteredThreads (then the thread's first safepoint() takes the slow
// path once, which reports it and catches `seen` up).
extern constinit std::atomic<uint64_t> unregisteredCounter;
// Per-thread view of the domain, kept in TLS. The fast path of safepoint() compiles to three
// loads (this block's counter pointer, the counter, `seen`), a null test and a compare.
struct SafepointTls {
  // The domain's grace-period counter; unregisteredCounter while the thread is unregistered.
  const std::atomic<uint64_t>* gpCounter = &unregisteredCounter;
  uint64_t seen = 0;                                 // the last counter value this thread reported
  ThreadRecord* record = nullptr;
};
// constinit: no TLS-init wrapper call on the fast path (the compiler knows it needs none).
extern constinit thread_local SafepointTls tlsSafepoint;
void safepointSlow() noexcept;
}  // namespace detail

// Announce a quiescent state: the caller holds no reference to code or data retired before
// this point. Fast path: no atomic read-modify-write, no fence. Unregistered threads: no-op
// (with Options::reportUnregisteredThreads, reported once per thread; same fast path).
inline void safepoint() noexcept {
  detail::SafepointTls& t = detail::tlsSafepoint;
  if (t.gpCounter != nullptr && t.gpCounter->load(std::memory_order_relaxed) != t.seen) {
    detail::safepointSlow();
  }
}

// Leave / re-enter the read side around a blocking call. Errors: kNotRegistered (also
// reported once per thread with Options::reportUnregisteredThreads), kInvalidArgument
// (already offline / already online). Never allocate on failure when memory is short.
Status goOffline() noexcept;
Status goOnline() noexcept;
bool isThreadRegistered() noexcept;

// RAII offline region for the calling (registered) thread; a no-op for unregistered threads
// (reported once per thread with Options::reportUnregisteredThreads).
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

// ---- polled grace periods and intrusive retirement (Runtime::gracePeriodState, retire) ----

// Names a grace period, as the cookie of Linux's get_state_synchronize_rcu(): the cookie
// taken at time t has elapsed once a full grace period that started after t has completed,
// i.e. once every thread registered and online at t has passed a safepoint (or gone
// offline) after t. Cookies never decrease: a later cookie is >= an earlier one, and a
// cookie that has elapsed stays elapsed. A default cookie (0) has always elapsed.
struct GracePeriodCookie {
  uint64_t value = 0;
  friend auto operator<=>(GracePeriodCookie, GracePeriodCookie) = default;
};

// Embed one in an object to retire it without allocating (as call_rcu with an rcu_head):
// Runtime::retire(&obj->node, fn) calls fn(&obj->node) after a grace period; recover the
// object from the node (e.g. a static_cast from a base, or offsetof). Every field belongs
// to patchcall from retire() until fn is called: do not touch the node, nor retire it
// again, before then. Layout pinned: it is patchcall_retire_node in the C API.
struct RetireNode {
  RetireNode* next = nullptr;
  void (*fn)(RetireNode*) = nullptr;
  uint64_t gracePeriod = 0;  // the grace period it waits for
};

// ---- stacks: fibers, coroutines, M:N schedulers -------------------------------------------
//
// Retired code is freed only when no stack holds an address inside it, so patchcall must
// know every stack a registered thread runs on (modelled on __sanitizer_start_switch_fiber
// and GC_set_stackbottom). Each registered thread has a "home" stack (its pthread stack);
// Runtime::registerStack adds others. A stack is running on one thread, or parked.
//
// What is scanned (conservatively, for addresses in retired blobs): a thread's current stack
// from its sp up, at its safepoint (from its offline sp while offline); every parked stack
// from the sp it was parked at, once per grace period that carries a scan; and, while such
// a grace period runs, both stacks of every switch. Registers are not scanned: code
// addresses kept only in callee-saved registers, or in a context saved off the stack (a
// ucontext_t on the heap), are invisible, exactly as for threads. A scan never reads outside
// a known stack: a thread found on a stack patchcall was not told about pins every blob
// being retired and gets one diagnostic ("call switchStack").

// Names a registered stack (Runtime::registerStack) or, as home(), the calling thread's own
// pthread stack. A value; valid until unregisterStack (a stale handle is refused).
struct StackHandle {
  const void* table = nullptr;  // the owning runtime's stack table; nullptr: home() or invalid
  uint32_t index = 0;
  uint32_t generation = 0;  // 0: no registered stack
  static constexpr uint32_t kHomeIndex = UINT32_MAX;
  static constexpr StackHandle home() noexcept { return {nullptr, kHomeIndex, 0}; }
  bool isHome() const noexcept { return table == nullptr && index == kHomeIndex; }
  bool valid() const noexcept { return isHome() || (table != nullptr && generation != 0); }
};

// Call on a registered thread immediately before it switches to stack `to` (and again, with
// StackHandle::home(), before it switches back to its pthread stack). The stack it leaves is
// parked at the caller's sp: keep every frame that matters at or above that sp (call this
// from the function that performs the switch, not from a callee that returns first).
// `to` may have been parked by any thread (fibers migrate). Cost: one CAS and a few plain
// stores (BM_FiberSwitch); while a grace period scans, both stacks are scanned here too.
// Errors: kNotRegistered, kInvalidArgument (stale or foreign handle; `to` running on another
// thread). Switching to the current stack is a no-op.
Status switchStack(StackHandle to) noexcept;
inline Status switchToHomeStack() noexcept { return switchStack(StackHandle::home()); }

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

// patchcall — stack switching (fibers) and the scans that keep retired code pinned by
// parked stacks. The state machine is in stacks.h.
#include "format.h"
#include "stacks.h"

#include <cstdio>
#include <iterator>
#include <new>
#include <string>

#include "fork_reset.h"
#include "quiescence.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall {
namespace detail {

namespace {

using detail::hex;

Status invalid(std::string message) { return Status(Error::kInvalidArgument, std::move(message)); }

}  // namespace

void ScanSet::markAll() const noexcept {
  for (size_t i = 0; i < begin.size(); ++i) hit[i].store(1, std::memory_order_relaxed);
}

bool scanStack(const ScanSet& set, const StackRecord& stack, uintptr_t sp) noexcept {
  // sp == hi is an empty stack (registered, never run). Anything outside: a switch nobody
  // told us about. Reading from there up could cross unmapped memory: read nothing, pin all.
  if (sp < stack.lo || sp > stack.hi || stack.hi == 0) {
    set.markAll();
    return false;
  }
  set.scan(sp, stack.hi);
  return true;
}

void scanIfParked(const ScanSet& set, StackRecord& stack) noexcept {
  uint64_t word = stack.state.load(std::memory_order_acquire);
  if ((word & kStackStateMask) != kStackParked) return;
  // Acquire: pairs with the parking release store, so savedSp and the frames are visible.
  if (!stack.state.compare_exchange_strong(word, (word & ~kStackStateMask) | kStackScanning,
                                           std::memory_order_acquire, std::memory_order_relaxed)) {
    return;  // resumed (its resumer scans it) or unregistered meanwhile
  }
  (void)scanStack(set, stack, stack.savedSp.load(std::memory_order_relaxed));
  stack.state.store(word, std::memory_order_release);  // parked again; a waiting resume proceeds
}

// ---- the table of registered stacks --------------------------------------------------------

StackTable::~StackTable() {
  for (auto& c : chunks_) {
    if (StackRecord* chunk = c.load(std::memory_order_relaxed)) {
      for (uint32_t i = 0; i < kChunk; ++i) chunk[i].~StackRecord();
      metadataFree(chunk);
    }
  }
}

Result<StackHandle> StackTable::add(uintptr_t lo, uintptr_t hi, std::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto next = byLo_.lower_bound(hi);  // first stack starting at or above hi
  if (next != byLo_.begin() && std::prev(next)->second > lo) {
    auto other = std::prev(next);
    return invalid("registerStack: [" + hex(lo) + ", " + hex(hi) + ") overlaps the registered stack [" +
                   hex(other->first) + ", " + hex(other->second) + ")");
  }
  const bool fresh = free_.empty();
  const uint32_t index = fresh ? used_ : free_.back();
  if (fresh) {
    if (index / kChunk >= kMaxChunks) return invalid("registerStack: more than 1 Mi stacks registered");
    if (chunks_[index / kChunk].load(std::memory_order_relaxed) == nullptr) {
      void* mem = metadataAllocate(sizeof(StackRecord) * kChunk, alignof(StackRecord));
      if (mem == nullptr) throw std::bad_alloc();
      auto* chunk = static_cast<StackRecord*>(mem);
      for (uint32_t i = 0; i < kChunk; ++i) new (&chunk[i]) StackRecord();
      chunks_[index / kChunk].store(chunk, std::memory_order_release);  // switch paths load it acquire
    }
    // Reserved now so nothing after the map insertion (or in remove) can fail.
    names_.reserve(used_ + 1);
    generations_.reserve(used_ + 1);
    free_.reserve(used_ + 1);
  }
  MiString copy(name.data(), name.size());
  byLo_.emplace(lo, hi);  // the last allocation
  if (fresh) {
    names_.emplace_back();
    generations_.push_back(0);
    ++used_;
  } else {
    free_.pop_back();
  }
  uint32_t gen = generations_[index] + 1 == 0 ? 1 : generations_[index] + 1;
  generations_[index] = gen;
  names_[index] = std::move(copy);
  StackRecord& s = *slot(index);
  s.lo = lo;
  s.hi = hi;
  s.savedSp.store(hi, std::memory_order_relaxed);  // parked and empty
  s.runner.store(0, std::memory_order_relaxed);
  s.state.store(stackWord(gen, kStackParked), std::memory_order_release);  // publishes lo/hi/savedSp
  return StackHandle{this, index, gen};
}

Status StackTable::remove(StackHandle h) {
  std::lock_guard<std::mutex> lock(mutex_);
  StackRecord* s = owns(h) ? slot(h.index) : nullptr;
  if (s == nullptr || generations_[h.index] != h.generation) {
    return invalid("unregisterStack: not a registered stack of this runtime (stale or foreign handle)");
  }
  const uint64_t parked = stackWord(h.generation, kStackParked);
  for (int i = 0;; ++i) {
    uint64_t word = parked;
    // Acquire: the scan we may have waited out is complete before the caller unmaps the stack.
    if (s->state.compare_exchange_weak(word, kStackFree, std::memory_order_acquire, std::memory_order_relaxed)) break;
    if (word == stackWord(h.generation, kStackRunning)) {
      return invalid("unregisterStack: stack '" + std::string(names_[h.index]) + "' is running on tid " +
                     std::to_string(s->runner.load()) + "; switch away from it first");
    }
    if (word != stackWord(h.generation, kStackScanning) && word != parked) {
      return invalid("unregisterStack: not a registered stack of this runtime (stale handle)");
    }
    if (i < 64) cpuRelax();  // a leader is scanning it (microseconds), or a spurious CAS failure
    else sched_yield();
  }
  byLo_.erase(s->lo);
  free_.push_back(h.index);  // capacity reserved in add(): cannot throw
  return Status::ok();
}

std::string StackTable::nameOf(StackHandle h) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out(1, '\'');  // appended, not "'" + name: GCC 12 -Wrestrict false positive
  out.append(h.index < names_.size() ? names_[h.index].c_str() : "?");
  out.push_back('\'');
  return out;
}

size_t StackTable::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return byLo_.size();
}

void StackTable::scanParked(const ScanSet& set) noexcept {
  for (auto& c : chunks_) {
    StackRecord* chunk = c.load(std::memory_order_acquire);
    if (chunk == nullptr) break;  // chunks are allocated in order
    for (uint32_t i = 0; i < kChunk; ++i) scanIfParked(set, chunk[i]);
  }
}

PATCHCALL_FORK_PATH void StackTable::afterForkInChild(const StackRecord* keep) noexcept {
  resetAfterFork(mutex_);  // the parent's other threads may have held it
  for (auto& c : chunks_) {
    StackRecord* chunk = c.load(std::memory_order_relaxed);
    if (chunk == nullptr) break;
    for (uint32_t i = 0; i < kChunk; ++i) {
      StackRecord& s = chunk[i];
      uint64_t w = s.state.load(std::memory_order_relaxed);
      uint64_t st = w & kStackStateMask;
      if (&s == keep || (st != kStackRunning && st != kStackScanning)) continue;
      if (st == kStackRunning) s.savedSp.store(s.hi, std::memory_order_relaxed);  // a scanned one keeps its frames
      storeIfDifferent(s.runner, 0);
      s.state.store((w & ~kStackStateMask) | kStackParked, std::memory_order_relaxed);
    }
  }
}

// ---- scans of a thread's stacks ----------------------------------------------------------------

void Quiescence::scanCurrent(const ScanSet& set, ThreadRecord* r, uintptr_t sp) noexcept {
  const StackRecord& cur = *r->current.load(std::memory_order_relaxed);
  if (!scanStack(set, cur, sp)) reportUnknownStack(r, sp, cur);
}

void Quiescence::reportUnknownStack(ThreadRecord* r, uintptr_t sp, const StackRecord& known) noexcept {
  if (r->unknownStackReported.exchange(true, std::memory_order_relaxed) || !config_.diagnostics) return;
  try {
    config_.diagnostics("patchcall: thread '" + std::string(r->name) + "' (tid " + std::to_string(r->tid) +
                        ") runs on a stack patchcall does not know (sp " + hex(sp) + ", outside [" + hex(known.lo) +
                        ", " + hex(known.hi) + ")); call switchStack before switching stacks. Nothing there is "
                        "read: blobs retired meanwhile stay pinned");
  } catch (...) {  // out of memory, or a throwing sink: the pinning alone keeps it safe
  }
}

void Quiescence::scanParkedStacks(const ScanSet& set) noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->skipStackScan.load()) return;
  {
    // Home stacks of threads running on a fiber. threadsMutex_ keeps the records alive; an
    // unregistering thread marks its home free (waiting out this scan) before it goes.
    std::lock_guard<std::mutex> lock(threadsMutex_);
    for (ThreadRecord* r : threads_) scanIfParked(set, r->home);
  }
  stacks_.scanParked(set);
}

void Quiescence::leaveStacks(ThreadRecord* r) noexcept {
  StackRecord* cur = r->current.load(std::memory_order_relaxed);
  if (cur != &r->home) {
    // Unregistering on a fiber: it stays registered, parked where the thread is now.
    cur->savedSp.store(currentStackPointer(), std::memory_order_relaxed);
    cur->runner.store(0, std::memory_order_relaxed);
    cur->state.store((cur->state.load(std::memory_order_relaxed) & ~kStackStateMask) | kStackParked,
                     std::memory_order_release);
    r->current.store(&r->home, std::memory_order_relaxed);
  }
  // The home stack dies with the thread: free it, waiting out a leader's scan of it.
  for (int i = 0;; ++i) {
    uint64_t word = r->home.state.load(std::memory_order_acquire);
    if (word != kStackScanning &&
        r->home.state.compare_exchange_weak(word, kStackFree, std::memory_order_acquire, std::memory_order_relaxed)) {
      break;
    }
    if (i < 64) cpuRelax();
    else sched_yield();
  }
}

// ---- switchStack ---------------------------------------------------------------------------------
//
// Why no stack that holds a reference into a retired blob is missed. A grace period with a
// scan set publishes it at P (under threadsMutex_, with its copy of the pending threads),
// waits until every pending thread has acknowledged (scanning at its safepoint) or is seen
// offline (scanned by the leader), runs the parked pass at L, and withdraws the set at W.
// Only a thread that has not acknowledged yet can create a new reference (after its
// safepoint it holds nothing retired before, except in frames already on its stacks). Take
// a stack X that holds a reference at W, written last by thread T:
//  1. X is T's current stack when T acknowledges: T's scan covers [sp, X.hi), every live
//     frame of X; what T pushes afterwards refers to nothing retired.
//  2. T is offline: the leader scans T's current stack from offlineSp under T's scanLock, and
//     an offline thread switches only under that lock; so the leader sees the switch (the
//     new current stack and offlineSp = its saved sp), or the switch comes after the leader
//     released the lock, which follows P, and sees the set (4).
//  3. X is parked at L: the pass scans it. The pass sees the park: a park by a pending thread
//     is sequenced before that thread's acknowledgement, offline store or unregistration,
//     each of which the leader reads with acquire before L; a thread that is not pending
//     registered after P's critical section, so its switches see the set (4). A stack resumed
//     between the pass's load and its CAS is scanned by its resumer, which sees the set: its
//     claim cannot precede its acknowledgement without preceding L (then the pass would have
//     seen it running).
//  4. X changes hands while the switching thread sees the set: the switch scans the outgoing
//     stack from its sp before parking it (still its own) and the incoming one from its saved
//     sp after claiming it. A switch that does not see the set yet is by a pending thread
//     before its acknowledgement: an outgoing X is parked before that ack (3, or resumed
//     again: 4 or 1); an incoming X is T's current stack at the ack (1), or switched out
//     again before it (3 or 4).
// Every scan of the set by a switch holds the thread's scanLock, which the withdrawal at W
// waits out before the set may be freed. The pass claims parked -> scanning, so a resume
// waits for the scan to finish and unregisterStack waits too (the embedder may unmap the
// stack when it returns).

Status Quiescence::switchStack(ThreadRecord* r, StackHandle to) noexcept {
  StackRecord* in = nullptr;
  uint64_t parked = kStackParked;  // the home stack's word carries generation 0
  if (to.isHome()) {
    in = &r->home;
  } else if (stacks_.owns(to) && (in = stacks_.slot(to.index)) != nullptr) {
    parked = stackWord(to.generation, kStackParked);
  } else {
    return statusNoexcept(Error::kInvalidArgument, "unknown stack",
                          [] { return std::string("switchStack: not a stack registered with the calling thread's runtime"); });
  }
  StackRecord* out = r->current.load(std::memory_order_relaxed);
  if (in == out) return Status::ok();
  const uintptr_t sp = currentStackPointer();
  const bool offline = r->ctr.load(std::memory_order_relaxed) == 0;  // only this thread writes it
  if (offline) lockSpin(r->scanLock);  // the leader reads current/offlineSp under it (case 2)

  // Claim the incoming stack: parked -> running. Acquire pairs with the release that parked
  // it (on any thread), so its savedSp and frames are visible here.
  const uint64_t base = parked & ~kStackStateMask;
  uint64_t word = parked;
  for (int i = 0; !in->state.compare_exchange_weak(word, base | kStackRunning, std::memory_order_acquire,
                                                   std::memory_order_relaxed);
       ++i) {
    if (word == (base | kStackScanning)) {  // the leader is scanning it: wait
      if (i < 64) cpuRelax();
      else sched_yield();
    } else if (word != parked) {  // running elsewhere, or unregistered (maybe re-registered)
      if (offline) unlockSpin(r->scanLock);
      if (word == (base | kStackRunning)) {
        return statusNoexcept(Error::kInvalidArgument, "stack is busy", [&] {
          return "switchStack: stack " + stacks_.nameOf(to) + " is running on tid " + std::to_string(in->runner.load()) +
                 "; a stack runs on one thread at a time";
        });
      }
      return statusNoexcept(Error::kInvalidArgument, "stale stack",
                            [] { return std::string("switchStack: the stack was unregistered (stale handle)"); });
    }
    word = parked;
  }
  in->runner.store(r->tid, std::memory_order_relaxed);

  // One acquire load on the way when no grace period scans. Re-read under the scanLock: the
  // withdrawal of the set waits for that lock, so the set stays alive while we use it.
  if (activeScan_.load(std::memory_order_acquire) != nullptr) {
    if (!offline) lockSpin(r->scanLock);
    TestHooks* hooks = testHooks();
    const ScanSet* set = activeScan_.load(std::memory_order_acquire);
    if (set != nullptr && (hooks == nullptr || !hooks->skipStackScan.load(std::memory_order_relaxed))) {
      (void)scanStack(*set, *out, sp);  // a foreign sp pins all; reported below
      (void)scanStack(*set, *in, in->savedSp.load(std::memory_order_relaxed));
    }
    if (!offline) unlockSpin(r->scanLock);
  }

  // Park the outgoing stack. Release: a resumer (or the pass) that sees parked sees savedSp.
  out->savedSp.store(sp, std::memory_order_relaxed);
  out->runner.store(0, std::memory_order_relaxed);
  out->state.store((out->state.load(std::memory_order_relaxed) & ~kStackStateMask) | kStackParked,
                   std::memory_order_release);
  r->current.store(in, std::memory_order_relaxed);
  if (offline) {
    r->offlineSp.store(in->savedSp.load(std::memory_order_relaxed), std::memory_order_relaxed);
    unlockSpin(r->scanLock);
  }
  // The caller was not on the stack we believed current: a switch we were not told about.
  if (sp < out->lo || sp > out->hi) reportUnknownStack(r, sp, *out);
  return Status::ok();
}

}  // namespace detail

Status switchStack(StackHandle to) noexcept {
  detail::ThreadRecord* r = detail::tlsSafepoint.record;
  if (r == nullptr || r->domain == nullptr) {
    return detail::statusNoexcept(Error::kNotRegistered, "not registered",
                                  [] { return std::string("switchStack: the calling thread is not registered"); });
  }
  return r->domain->switchStack(r, to);
}

Result<StackHandle> Runtime::registerStack(void* lo, size_t size, std::string_view name) {
  auto begin = reinterpret_cast<uintptr_t>(lo);
  if (lo == nullptr || size == 0 || begin + size < begin) {
    return Status(Error::kInvalidArgument, "registerStack: lo must be non-null, size non-zero and the range "
                                           "must not wrap (lo " + detail::hex(begin) + ", size " +
                                               std::to_string(size) + ")");
  }
  return detail::catchOutOfMemory("registerStack", [&]() -> Result<StackHandle> {
    return impl_->quiescence->stacks().add(begin, begin + size, name);
  });
}

Status Runtime::unregisterStack(StackHandle stack) {
  if (stack.isHome()) return Status(Error::kInvalidArgument, "unregisterStack: a thread's home stack is not registered");
  return detail::catchOutOfMemory("unregisterStack", [&] { return impl_->quiescence->stacks().remove(stack); });
}

}  // namespace patchcall

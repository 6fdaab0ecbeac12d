// patchcall — stacks a registered thread may run on: its own pthread stack (the "home"
// stack, one per ThreadRecord) and the stacks an embedder registers for fibers.
//
// Every stack has one state word, (generation << 2) | state:
//   free -> parked            registerStack (an empty stack: savedSp = hi)
//   parked -> running         switchStack claims the incoming stack (one CAS)
//   running -> parked         switchStack parks the outgoing stack (savedSp = its sp)
//   parked -> scanning -> parked   the grace-period leader scans a parked stack
//   parked -> free (gen + 1)  unregisterStack (refused while running; waits out a scan)
// The generation in the word makes a stale handle's CAS fail even after its slot is reused.
// The protocol and why no stack is missed: stacks.cpp, above Quiescence::switchStack.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "arch/arch.h"
#include "metadata.h"
#include "patchcall/quiescence.h"
#include "patchcall/status.h"

namespace patchcall::detail {

struct ScanSet;

inline void cpuRelax() noexcept { arch::cpuRelax(); }
// A thread's scanLock: held for a stack scan, which takes microseconds; yields after a while.
inline void lockSpin(std::atomic<uint32_t>& lock) noexcept {
  for (int i = 0; lock.exchange(1, std::memory_order_acquire) != 0; ++i) {
    if (i < 64) cpuRelax();
    else sched_yield();
  }
}
inline void unlockSpin(std::atomic<uint32_t>& lock) noexcept { lock.store(0, std::memory_order_release); }

// The caller's stack pointer (its frame address: always inlined into the caller).
__attribute__((always_inline)) inline uintptr_t currentStackPointer() noexcept {
  return reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
}

enum : uint64_t { kStackFree = 0, kStackParked = 1, kStackScanning = 2, kStackRunning = 3, kStackStateMask = 3 };
inline uint64_t stackWord(uint32_t generation, uint64_t state) { return (uint64_t{generation} << 2) | state; }

struct StackRecord {
  std::atomic<uint64_t> state{kStackFree};
  std::atomic<uintptr_t> savedSp{0};  // parked: the sp of the switch; [savedSp, hi) holds its frames
  uintptr_t lo = 0, hi = 0;           // written while free (or by the owning thread), read after an
                                      // acquire of `state` that saw it registered
  std::atomic<pid_t> runner{0};       // tid running it, for messages only
};

// Scans [sp, stack.hi) for addresses in `set` when lo <= sp <= hi. Otherwise reads nothing,
// marks every range of the set as hit (pins everything) and returns false.
bool scanStack(const ScanSet& set, const StackRecord& stack, uintptr_t sp) noexcept;

// The leader's scan of one stack if it is parked: parked -> scanning -> parked. A stack
// resumed meanwhile is skipped: its resumer scans it (stacks.cpp).
void scanIfParked(const ScanSet& set, StackRecord& stack) noexcept;

// Registered (non-home) stacks: fixed-size chunks that are never freed before the table, so
// the switch path finds a record with two loads and no lock.
class StackTable {
 public:
  static constexpr uint32_t kChunk = 256, kMaxChunks = 4096;  // up to 1 Mi stacks
  StackTable() = default;
  ~StackTable();
  StackTable(const StackTable&) = delete;
  StackTable& operator=(const StackTable&) = delete;

  Result<StackHandle> add(uintptr_t lo, uintptr_t hi, std::string_view name);
  Status remove(StackHandle h);
  // The slot a handle names, or nullptr; the caller checks the generation with its CAS.
  StackRecord* slot(uint32_t index) const noexcept {
    if (index / kChunk >= kMaxChunks) return nullptr;
    StackRecord* chunk = chunks_[index / kChunk].load(std::memory_order_acquire);
    return chunk == nullptr ? nullptr : chunk + index % kChunk;
  }
  bool owns(StackHandle h) const noexcept { return h.table == this && h.generation != 0; }
  std::string nameOf(StackHandle h) const;  // "'fiber-7'", for messages
  void scanParked(const ScanSet& set) noexcept;
  // fork(), in the child: a stack that was running on another thread has no saved context
  // here and can never be resumed; it becomes parked and empty, so it pins nothing and can be
  // unregistered. One the parent's leader was scanning is parked again as it was. `keep` is
  // the forking thread's current stack.
  void afterForkInChild(const StackRecord* keep) noexcept;
  size_t size() const;

 private:
  std::atomic<StackRecord*> chunks_[kMaxChunks] = {};
  mutable std::mutex mutex_;  // everything below
  uint32_t used_ = 0;         // slots ever handed out
  MiVector<uint32_t> free_;
  MiVector<MiString> names_;
  MiVector<uint32_t> generations_;   // current generation of each slot (0: never used)
  MiMap<uintptr_t, uintptr_t> byLo_;  // registered [lo, hi): no two may overlap
};

}  // namespace patchcall::detail

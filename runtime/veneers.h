// patchcall — Veneers: stubs in the arena for targets out of a call's reach (their bytes:
// runtime/arch/<isa>/stubs.h; on x86-64 `jmp [rip+0]; .quad target`).
//
// Life of a veneer (every member runs with Runtime::Impl::textMutex held, except the free
// step, which runs from a retire callback):
//   1. planned  during validation (destination): a slot is chosen, nothing written; a
//               refused batch drops it (dropPlanned) and the arena is unchanged.
//   2. live     publishPlanned writes it and syncs every core BEFORE any call is pointed at
//               it, so no core can reach a veneer it fetched as int3 fill.
//   3. orphan   its users (calls and trampoline jumps whose field names it) fell to zero: it
//               leaves the far-target map at once and is retired after the update's last sync.
//               A veneer to code outside the arena is never orphaned (pinned, unless
//               Options::freeVeneersOutsideArena): an unregistered thread that called a
//               trampoline may be about to run it, and no grace period waits for such a thread.
//   4. freed    a grace period later nobody can still be about to execute it (a thread inside
//               it has not passed a safepoint): int3-filled and its slot reused.
// A toggle's inactive call counts as a user: a thread past the toggle may still take it.
// A foreign site keeps its reference when unregistered (its code still calls the veneer).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "arch/arch.h"
#include "code_arena.h"
#include "code_observer.h"
#include "metadata.h"
#include "patchcall/status.h"
#include "text_writer.h"

namespace patchcall::detail {

class Reclaimer;

class Veneers {
 public:
  Veneers(CodeArena& arena, TextWriter& writer, CodeObserver& observer, bool allowed, bool freeOutsideArena)
      : arena_(arena), writer_(writer), observer_(observer), allowed_(allowed), freeOutsideArena_(freeOutsideArena) {}
  // Retired veneers are freed through the reclaimer's queue (it is created after the registry).
  void attach(Reclaimer& reclaimer) noexcept { reclaimer_ = &reclaimer; }

  // Where the call or jump at `insn` must point to reach `target`: the target itself, or a
  // veneer (which this only plans: see publishPlanned).
  Result<uintptr_t> destination(uintptr_t insn, uintptr_t target) {
    if (arch::inReach(insn, target)) return target;  // the common case, inline
    return planVeneer(insn, target);
  }
  // Validation succeeded: write the planned veneers and sync, before any call points at one.
  // A sync that keeps failing is kSystemError (the veneers are written).
  Status publishPlanned();
  // Validation failed (or starts over): forget the planned veneers; nothing was written.
  void dropPlanned() noexcept;

  // Before writing a branch field that will reach `target` via `destination`: reserve
  // (allocates) for every write, then note (cannot fail) for every write, both before the
  // first write. Moves the references between veneers.
  void reserveUser(uintptr_t field, uintptr_t destination, uintptr_t target);
  void noteUser(uintptr_t field, uintptr_t destination, uintptr_t target) noexcept;
  void forgetUser(uintptr_t field) noexcept;  // the branch's code is gone (blob freed)
  bool hasUsers() const noexcept { return !userOf_.empty(); }  // some branch names a veneer
  // After the sync that moved the last user off them: free unused veneers a grace period later.
  void retireOrphans() noexcept;
  bool hasOrphans() const noexcept { return !orphans_.empty(); }

  bool contains(uintptr_t p) const noexcept { return pool_.contains(p); }
  // The target a branch to `destination` reaches (through the veneer, if it is one).
  uintptr_t resolve(uintptr_t destination) const noexcept {
    return pool_.contains(destination) ? arch::veneerTarget(destination) : destination;
  }
  size_t live() const noexcept { return byTarget_.size(); }
  // f(veneer, far target) for every live veneer.
  template <typename F>
  void forEachLive(F&& f) const {
    for (const auto& [target, v] : byTarget_) f(v, target);
  }
  uint64_t retired() const noexcept { return retired_.load(std::memory_order_acquire); }
  uint64_t freed() const noexcept { return freed_.load(std::memory_order_acquire); }

 private:
  Result<uintptr_t> planVeneer(uintptr_t insn, uintptr_t target);
  void release(uintptr_t veneer) noexcept;
  void recycle(uintptr_t veneer) noexcept;

  CodeArena& arena_;
  TextWriter& writer_;
  CodeObserver& observer_;
  Reclaimer* reclaimer_ = nullptr;
  const bool allowed_;  // Options::allowVeneers
  const bool freeOutsideArena_;  // Options::freeVeneersOutsideArena
  SlotPool pool_;
  MiHashMap<uintptr_t, uintptr_t> byTarget_;   // far target -> live veneer
  MiHashMap<uintptr_t, uint32_t> users_;       // live veneer -> branches naming it
  MiHashMap<uintptr_t, uintptr_t> userOf_;     // field of such a branch -> veneer
  MiVector<std::pair<uintptr_t, uintptr_t>> planned_;  // (target, slot)
  MiVector<uintptr_t> orphans_;                // no user left: retire after the syncs
  std::mutex freeMutex_;                       // freeSlots_ (retire callbacks add)
  MiVector<uintptr_t> freeSlots_;              // int3-filled, reusable
  std::atomic<uint64_t> retired_{0}, freed_{0};
};

}  // namespace patchcall::detail

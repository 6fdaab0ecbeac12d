// patchcall — TextWriter: every write to code, and the cross-core sync that makes writes
// visible to the other cores.
//
// Arena code is written through the arena's RW alias; code patchcall did not emit (foreign
// sites) through /proc/self/mem, which the kernel writes despite the page's RX protection.
// A width one instruction can store (1, 2, 4 or 8 aligned bytes) is stored by one
// instruction, so a core fetching concurrently sees the old or the new bytes, never a mix.
// Every write runs under Runtime::Impl::textMutex (the writer itself takes no lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "arch/arch.h"
#include "code_arena.h"
#include "cross_core_sync.h"
#include "proc_self_mem.h"
#include "test_hooks.h"
#include "patchcall/options.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class TextWriter {
 public:
  TextWriter(CodeArena& arena, std::function<void(const PatchEvent&)> observer) : arena_(arena), observer_(std::move(observer)) {}
  TextWriter(const TextWriter&) = delete;
  TextWriter& operator=(const TextWriter&) = delete;

  // Sets up the sync (membarrier registration or the fallback) and opens /proc/self/mem.
  Status open(SyncMethod method);

  // Before a mutating call's first code write (and again after it relocks the text mutex,
  // which a fork may have taken meanwhile), under the text mutex: a process still sharing its
  // arena with a fork relative takes its own copy (CodeArena::unshare). Writes below require
  // it; a hook build aborts on a write into a shared arena.
  Status ownCode() { return arena_.shared() ? arena_.unshare() : Status::ok(); }
  bool codeShared() const noexcept { return arena_.shared(); }

  // False only for foreign code the kernel refused to write (errno says why).
  [[nodiscard]] bool write(uintptr_t rx, const void* bytes, size_t n);
  // A branch field in the arena (always aligned): one relaxed store through the RW alias.
  void storeField(uintptr_t field, int32_t value) noexcept {
    checkOwned();
    __atomic_store_n(reinterpret_cast<int32_t*>(arena_.toRw(reinterpret_cast<void*>(field))), value, __ATOMIC_RELAXED);
    arch::codeWritten(field, sizeof value);
  }
  // A key's target cell in the arena (always 8-byte aligned): one relaxed store through the RW alias.
  void storeCell(uintptr_t cell, const void* target) noexcept {
    checkOwned();
    __atomic_store_n(reinterpret_cast<const void**>(arena_.toRw(reinterpret_cast<void*>(cell))), target, __ATOMIC_RELAXED);
    arch::codeWritten(cell, sizeof target);
  }
  // Foreign code through /proc/self/mem: never dereferenced (its mapping may be gone).
  [[nodiscard]] bool readForeign(uintptr_t rx, void* out, size_t n) const noexcept;
  [[nodiscard]] bool writeForeign(uintptr_t rx, const void* bytes, size_t n) const noexcept;  // state untouched
  // Foreign code needs /proc/self/mem; a fork child opens its own only on first need.
  Status needForeignAccess();
  // In a fork child: the descriptor `parent` opened names the parent; closed here, and
  // reopened now when the child has foreign sites (`needNow`), else by needForeignAccess.
  Status afterForkInChild(bool needNow, pid_t parent) noexcept;

  // Tells the embedder's patch observer (Options::patchObserver) that a site now calls `target`.
  void notify(uintptr_t site, uintptr_t target, SiteForm form) const {
    if (observer_) observer_(PatchEvent{reinterpret_cast<const void*>(site), reinterpret_cast<const void*>(target), form});
  }

  CrossCoreSync& sync() noexcept { return sync_; }
  const CrossCoreSync& sync() const noexcept { return sync_; }

 private:
  void checkOwned() const noexcept {
    if (testHooks() != nullptr && arena_.shared()) sharedArenaWritten();
  }
  [[noreturn]] static void sharedArenaWritten() noexcept;

  CodeArena& arena_;
  std::function<void(const PatchEvent&)> observer_;
  CrossCoreSync sync_;
  ProcSelfMem procMem_;  // foreign code
};

}  // namespace patchcall::detail

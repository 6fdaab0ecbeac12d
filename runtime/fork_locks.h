// patchcall — one runtime's locks that fork()'s prepare handler holds across the fork, and the
// pid of the process that owns its code: a slot on the process's fork page (fork_safety.cpp).
//
// The fork page is marked MADV_WIPEONFORK, so the kernel never shares it with a child: the
// parent's unlocks after fork() take no copy-on-write fault (nor its next prepare a
// write-protect fault), and the child re-creates every runtime's locks on one zero-filled
// page, where they used to sit on three objects' heap pages that parent and child each
// copied (2-7 us a page on these VMs: BM_ForkChild's child_minflt and parent_minflt). Each
// object keeps a reference to its lock here. Under qemu-user, which ignores the advice, and in
// a slot from the heap (the page holds kForkPageSlots), the same code runs on copied pages.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <memory>
#include <mutex>

#include "fair_mutex.h"

namespace patchcall::detail {

struct ForkLocks {
  FairMutex text;                // Runtime::Impl::textMutex
  std::mutex reservations;       // Installer: outstanding code reservations
  std::mutex arena;              // CodeArena: allocation
  std::timed_mutex reclaimPass;  // Reclaimer: one pass at a time
  std::mutex reclaimQueue;       // Reclaimer: its queues
  // Reclaimer: wakes its background thread. Here because the parent's thread waits on it, so
  // a child would re-create it: on a page of its own (a fault) by libstdc++'s constructor
  // (another fault: libstdc++'s text), 4-6 us of the child handler's 9-11 us. A child finds it
  // zero-filled, glibc's initial state.
  std::condition_variable reclaimWake;
  // Reclaimer: its background thread runs in this process. False in a child (the parent's
  // thread is not there), so the child's reclaimer writes nothing of its own at the fork.
  bool reclaimThreadHere = false;
  // The process whose code this runtime writes (Runtime::Impl::checkOwnProcess). Zero on the
  // wiped page of a child made without the atfork handlers, which therefore never matches.
  pid_t ownerPid = 0;

  // In a fork child, by the forking thread: every lock new (the parent's other threads held
  // or waited on them), then taken again where this thread held it before the fork.
  void recreateInChild(bool textHeld, bool reclaimPassHeld, pid_t pid) noexcept;
};

struct GiveBackForkLocks {
  void operator()(ForkLocks* l) const noexcept;
};
using ForkLocksPtr = std::unique_ptr<ForkLocks, GiveBackForkLocks>;

// A slot on the fork page, or from the heap when the page is full or could not be mapped;
// null when out of memory.
ForkLocksPtr takeForkLocks();

}  // namespace patchcall::detail

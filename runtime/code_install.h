// patchcall — the Installer: reserving arena space for code, committing it with its sites
// (every site's field written for its key's current target), abandoning a reservation.
//
// Reservations have their own mutex (reserving and writing code into a reservation never
// takes the text mutex); commit runs under the text mutex like every registry change.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>

#include "code_arena.h"
#include "code_observer.h"
#include "metadata.h"
#include "patchcall/runtime.h"
#include "registry.h"
#include "text_writer.h"
#include "veneers.h"

namespace patchcall::detail {

class Installer {
 public:
  Installer(CodeArena& arena, TextWriter& writer, Registry& registry, Veneers& veneers, CodeObserver& observer,
            std::mutex& reservationsLock)
      : arena_(arena), writer_(writer), registry_(registry), veneers_(veneers), observer_(observer),
        reservationsMutex_(reservationsLock) {}

  // Refuses (mustUnshare set, nothing reserved) while the arena is shared after a fork: the
  // caller unshares it under the text mutex and asks again. A reservation therefore exists
  // only in an arena of this process's own, and a fork with one outstanding copies at once.
  Result<CodeReservation> reserve(size_t size, bool* mustUnshare);
  // Only an outstanding reservation is released; anything else (a committed blob, a forged
  // or repeated handle, one another thread is committing) is ignored, so live code is never
  // int3-filled by mistake.
  void abandon(const CodeReservation& r);
  // The text mutex held: claims the reservation (refusing anything but an outstanding
  // reservation of this runtime that no other thread is committing), validates every site
  // and `info` (code_info.h), then writes and registers them all, syncs, and tells the
  // observer (perf, gdb, the unwinder). Refused before the first write, the reservation is
  // the caller's again (abandon or retry).
  Result<Blob> commit(const CodeReservation& r, std::span<const SiteSpec> sites, const CodeInfo& info);

  // fork(): the reservations' mutex is held across fork (fork_safety.cpp).
  std::mutex& reservationsMutex() noexcept { return reservationsMutex_; }
  bool hasReservationsLocked() const noexcept { return !reservations_.empty(); }  // under reservationsMutex()

 private:
  CodeArena& arena_;
  TextWriter& writer_;
  Registry& registry_;
  Veneers& veneers_;
  CodeObserver& observer_;
  struct Reservation {
    size_t size;
    bool committing;  // claimed by a commit in progress (abandon ignores it)
  };
  Status claim(const CodeReservation& r);
  void unclaim(const CodeReservation& r) noexcept;

  std::mutex& reservationsMutex_;  // on the fork page (fork_locks.h)
  MiMap<uintptr_t, Reservation> reservations_;  // outstanding, by rx
};

}  // namespace patchcall::detail

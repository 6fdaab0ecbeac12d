// patchcall — the Retargeter: the update path, as named steps (retargeter.cpp reads top to
// bottom in the same order).
//
//   plan              validate every key and target, plan every write (no write yet; new
//                     veneers only planned)
//   awaitToggleGrace  a toggle flipped less than a grace period ago is not rewritten: drop
//                     the lock, wait, plan again
//   probeForeign      foreign sites still mapped, still our call, still writable
//   write             phase 1: Direct sites (foreign ones too where arch::kForeignSiteForm is
//                     kDirect), trampolines and target cells (one aligned store
//                     each), each toggle's inactive call, the breakpoint over each breakpoint
//                     site -> sync; phase 2: flip the toggles, breakpoint sites' tails -> sync;
//                     phase 3: breakpoint sites' heads -> sync. Breakpoint sites beyond one
//                     trap-table round take further rounds of three syncs (the only loop).
//   publish           the keys' new targets; each toggle's flip, for the rule above; then the
//                     last sync through Publication (shared with concurrent updaters; a
//                     Direct-only update drops the text mutex first), or none for a
//                     deferred update (publication.h)
//   observe           (before that last sync, under the text mutex) jitdump: a new load of
//                     each blob the writes touched (code_observer.h)
//   strictWait        strict updates of keys with toggle sites: a grace period after the flip
// A batch of Direct sites costs one sync; toggles two; breakpoint sites three per round;
// deferred ones one fewer (none for Direct sites).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "code_observer.h"
#include "foreign_site.h"
#include "metadata.h"
#include "patchcall/runtime.h"
#include "publication.h"
#include "quiescence.h"
#include "registry.h"
#include "text_mutex.h"
#include "text_writer.h"
#include "veneers.h"

namespace patchcall::detail {

class Retargeter {
 public:
  Retargeter(const Options& options, Registry& registry, Veneers& veneers, TextWriter& writer, Publication& publication,
             ForeignSites& foreign, Quiescence& quiescence, CodeObserver& observer)
      : options_(options), registry_(registry), veneers_(veneers), writer_(writer), publication_(publication),
        foreign_(foreign), quiescence_(quiescence), observer_(observer) {}

  // update() / updateBatch(): `guard` holds the text mutex; the waits drop it. `previous`
  // (optional) receives each key's old target.
  Status update(TextMutexGuard& guard, std::span<const KeyUpdate> updates, const void** previous, const UpdateOptions& how);
  // Points one just-registered foreign site at its key's current target with its form's
  // protocol, synced; the key itself (target, other sites) is left alone. The caller holds
  // the text mutex throughout (registration never drops it between reading the target and
  // writing the site).
  Status patchSiteToKey(uint32_t siteId);

  uint64_t updates() const noexcept { return updates_.load(std::memory_order_relaxed); }
  uint64_t siteWrites() const noexcept { return siteWrites_.load(std::memory_order_relaxed); }
  uint64_t toggleGraceWaits() const noexcept { return toggleGraceWaits_.load(std::memory_order_relaxed); }
  uint64_t deferredUpdates() const noexcept { return deferred_.load(std::memory_order_relaxed); }

 private:
  // `destination` is where the branch points: the target, or a veneer for it. 32 bytes: a
  // batch of 10,000 keys plans 20,000 of them, streamed through the cache twice.
  struct DirectWrite {
    uintptr_t site, destination, target;
    bool jump;     // a trampoline's jump, not a call
    bool foreign;  // a foreign site's call (arch::kForeignSiteForm kDirect): through /proc/self/mem
    uintptr_t field() const noexcept { return arch::branchField(site); }
  };
  struct ToggleWrite {
    uint32_t siteId;
    uintptr_t site, field, destination;  // field: the inactive call's
    uint8_t flip[arch::kToggleFlipSize];
    uintptr_t target;
  };
  struct BreakpointWrite {
    uintptr_t site, destination, target;
    bool foreign;
  };
  struct Plan {
    MiVector<KeyRecord*> keys;  // keys[i]: updates[i]'s record (its target cell is written)
    MiVector<DirectWrite> direct;
    MiVector<ToggleWrite> toggles;
    MiVector<BreakpointWrite> breakpoints;
    uint64_t graceNeeded = 0;  // largest unfinished grace-period snapshot among the toggles
    bool strict = false;       // some key has KeyOptions::strictUpdates
    bool unchanged = true;     // every key's new target is the one it has
    bool viaVeneer = false;    // some branch reaches its target through a veneer
    bool foreign = false;      // some Direct write is a foreign site's
    size_t writes() const noexcept { return direct.size() + toggles.size() + breakpoints.size(); }
  };
  class Writing;  // one write step's state (retargeter.cpp)

  Status plan(std::span<const KeyUpdate> updates, Plan& plan);
  Status probeForeign(const Plan& plan) const;
  // The write step, up to the last sync: that one is left to the publication step, unless
  // the plan has breakpoint sites (their trap entries must outlive it). Returns the first
  // failure past validation (a foreign write the kernel refused after its probe passed, a
  // sync that kept failing); every other site completes. kReentrantUpdate: refused before
  // any write.
  Status write(const Plan& plan);
  uint64_t publish(const Plan& plan, const void** previous, bool* strict);
  // After the syncs: one jitdump reload per blob whose sites the plan rewrote.
  void observe(const Plan& plan);

  const Options& options_;
  Registry& registry_;
  Veneers& veneers_;
  TextWriter& writer_;
  Publication& publication_;
  ForeignSites& foreign_;
  Quiescence& quiescence_;
  CodeObserver& observer_;
  std::atomic<uint64_t> updates_{0}, siteWrites_{0}, toggleGraceWaits_{0}, deferred_{0};
};

}  // namespace patchcall::detail

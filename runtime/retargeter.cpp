// patchcall — the update path, top to bottom.
//
//   1. refuse re-entry (an observer or callback already holds the text mutex)
//   2. lock the text mutex; validate every key and target, plan every write (no write yet,
//      new veneers only planned); then write and sync the new veneers, count their users
//   3. toggle sites flipped less than a grace period ago: drop the lock, wait, start over
//   4. phase 1: Direct sites and trampolines (one aligned 4-byte store each), the inactive
//      call of each toggle, int3 on each breakpoint site            -> sync
//   5. phase 2: flip the toggles (one aligned 2-byte store), breakpoint tails -> sync
//   6. phase 3: breakpoint first bytes (the call's head again)      -> sync
//   7. publish the new targets; remember each toggle's flip for its next update
//   8. strict updates of keys with toggle sites: a grace period after the flip, lock dropped
// A batch of Direct sites costs one sync; toggles two; breakpoint sites three per round.
// Foreign sites are probed in step 2 (still mapped, still our call, still writable), so a
// site the kernel no longer lets us write refuses the update before its first write.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "format.h"
#include "runtime_impl.h"
#include "test_hooks.h"
#include "trap_table.h"

namespace patchcall {

using detail::SiteRecord;
using detail::TextMutexGuard;

namespace {

// `destination` is where the call points: `target`, or a veneer for it. `field`: the
// arch::branchField the write rewrites.
struct DirectWrite {
  uintptr_t field, destination, site;
  SiteForm form;
  uintptr_t target;
  bool jump;  // a trampoline's jump, not a call
};
struct ToggleWrite {
  uint32_t siteId;
  uintptr_t site, field, destination;
  uint8_t flip[arch::kToggleFlipSize];
  uintptr_t target;
};
struct BreakpointWrite {
  uintptr_t site, destination, target;
  bool foreign;
};

struct Plan {
  detail::MiVector<DirectWrite> direct;
  detail::MiVector<ToggleWrite> toggles;
  detail::MiVector<BreakpointWrite> breakpoints;
  uint64_t graceNeeded = 0;  // largest unfinished grace-period snapshot among toggles
};

// Set while this thread holds the process-wide breakpoint round (its patch observers run then).
thread_local bool tlsInTrapRound = false;

using detail::hex;

// Steps 4-6 for a validated plan. `cells`: the keys whose target cells phase 1 writes.
// Returns the first foreign write the kernel refused after its probe passed (the mapping
// changed under us); that site is left calling its old target, every other site completes.
Status writePlan(Runtime::Impl& m, const Plan& plan, std::span<const KeyUpdate> cells, detail::TestHooks* hooks) {
  Status failure;
  auto syncAll = [&] {
    if (hooks != nullptr && hooks->skipSync.load()) return;
    // Past the first write there is no undoing: finish the protocol, report the first failure.
    if (int e = m.sync.sync(); e != 0 && failure.isOk()) {
      failure = Status(Error::kSystemError, "update: the cross-core sync failed three times (" + std::string(std::strerror(e)) +
                                                ") after the code was written; the sites are retargeted, but other cores "
                                                "may run the old bytes until they next serialize");
    }
  };
  auto writeFieldBytewise = [&](uintptr_t field, int32_t value) {
    if (hooks == nullptr || hooks->betweenBytes.load() == nullptr) return (void)m.write(field, &value, arch::kFieldSize);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
    for (int b = 0; b < static_cast<int>(arch::kFieldSize); ++b) {
      m.write(field + static_cast<uintptr_t>(b), bytes + b, 1);
      hooks->betweenBytes.load()(b);
    }
  };

  // ---- 4-6. write; breakpoint sites go in rounds of at most TrapTable::kMaxBatch --------
  detail::TrapTable& traps = detail::TrapTable::instance();
  std::unique_lock<std::mutex> trapRound(traps.roundMutex(), std::defer_lock);
  if (!plan.breakpoints.empty() && tlsInTrapRound) {
    // A patch observer of another runtime's breakpoint round: rounds are process-wide and
    // never nest. Nothing is written yet.
    return Status(Error::kReentrantUpdate, "update: breakpoint sites cannot be patched from a patch observer that runs "
                                           "during another runtime's breakpoint round; defer it until that update returns");
  }
  struct RoundMarker {
    bool set = false;
    ~RoundMarker() {
      if (set) tlsInTrapRound = false;
    }
  } roundMarker;
  if (!plan.breakpoints.empty()) {
    trapRound.lock();
    tlsInTrapRound = roundMarker.set = true;
  }
  // Validated. New veneers are written and synced before any call points at them; their
  // references move before the first site write (allocation first).
  if (Status v = m.publishPendingVeneers(); !v.isOk()) failure = v;  // past validation: finish, report
  auto eachCall = [&](auto&& f) {
    for (const DirectWrite& w : plan.direct) f(w.field, w.destination, w.target);
    for (const ToggleWrite& w : plan.toggles) f(w.field, w.destination, w.target);
    for (const BreakpointWrite& w : plan.breakpoints) f(arch::branchField(w.site), w.destination, w.target);
  };
  eachCall([&](uintptr_t r, uintptr_t d, uintptr_t t) { m.reserveCallDestination(r, d, t); });
  eachCall([&](uintptr_t r, uintptr_t d, uintptr_t t) { m.noteCallDestination(r, d, t); });
  size_t bpDone = 0;
  bool first = true;
  // Allocate before the first write: an out-of-memory must not interrupt a protocol.
  detail::MiVector<uint32_t> slots;
  detail::MiVector<uint8_t> stage;  // per round site: how far its writes got (foreign only)
  slots.reserve(std::min(plan.breakpoints.size(), detail::TrapTable::kMaxBatch));
  stage.reserve(slots.capacity());
  for (const ToggleWrite& w : plan.toggles) m.toggleFlipSnap.try_emplace(w.siteId, 0);
  auto refused = [&](const BreakpointWrite& w, const char* step) {
    if (!failure.isOk()) return;
    failure = Status(Error::kUnsupportedSite, "update: the kernel refused to write " + std::string(step) +
                                                  " of foreign site " + hex(w.site) + " through /proc/self/mem (" +
                                                  std::strerror(errno) + ") although the site passed its probe just "
                                                  "before (was its mapping changed meanwhile?); that site still calls "
                                                  "its old target, every other site was retargeted");
  };
  enum : uint8_t { kUntouched, kTrapped, kTailWritten, kDone };
  while (first || bpDone < plan.breakpoints.size()) {
    size_t bpCount = std::min(plan.breakpoints.size() - bpDone, detail::TrapTable::kMaxBatch);
    std::span<const BreakpointWrite> round(plan.breakpoints.data() + bpDone, bpCount);
    slots.clear();
    stage.assign(round.size(), kUntouched);
    // phase 1
    if (first) {
      for (const KeyUpdate& u : cells) m.write(arch::trampolineCell(m.key(u.key)->trampoline), &u.target, 8);
      for (const DirectWrite& w : plan.direct) {
        m.storeField(w.field, w.jump ? arch::jumpFieldValue(w.field, w.destination) : arch::callFieldValue(w.field, w.destination));
        m.notify(w.site, w.destination, w.form);
      }
      for (const ToggleWrite& w : plan.toggles) writeFieldBytewise(w.field, arch::callFieldValue(w.field, w.destination));
    }
    for (const BreakpointWrite& w : round) {
      int64_t slot = traps.publish(w.site, w.destination);
      slots.push_back(static_cast<uint32_t>(slot));  // cannot fail: rounds are half the table
    }
    // Every entry is visible before any int3 it covers (the handler relies on it).
    if (!round.empty()) traps.beginRound();
    for (size_t i = 0; i < round.size(); ++i) {
      if (m.write(round[i].site, arch::kBreakpoint, arch::kBreakpointSize)) stage[i] = kTrapped;
      else refused(round[i], "the int3");  // untouched: the old call stays whole
    }
    syncAll();
    if (!round.empty() && hooks != nullptr && hooks->afterBreakpointInt3.load() != nullptr) hooks->afterBreakpointInt3.load()();
    // phase 2
    bool phase2 = !round.empty() || (first && !plan.toggles.empty());
    if (first) {
      for (const ToggleWrite& w : plan.toggles) {
        m.write(w.site, w.flip, arch::kToggleFlipSize);
        m.notify(w.site, w.destination, SiteForm::kToggle);
      }
    }
    for (size_t i = 0; i < round.size(); ++i) {
      if (stage[i] != kTrapped) continue;
      uintptr_t field = arch::branchField(round[i].site);
      int32_t value = arch::callFieldValue(field, round[i].destination);
      if (m.write(field, &value, arch::kFieldSize)) {
        stage[i] = kTailWritten;
      } else {
        refused(round[i], "the rel32");
        // The tail may be half written: put the old one back before the call's head returns.
        auto f = m.foreignSites.find(round[i].site);
        if (f != m.foreignSites.end()) (void)m.write(field, &f->second.field, arch::kFieldSize);
      }
    }
    if (phase2) syncAll();
    // phase 3
    for (size_t i = 0; i < round.size(); ++i) {
      const BreakpointWrite& w = round[i];
      if (stage[i] == kUntouched) continue;
      if (!m.write(w.site, arch::kCallHead, arch::kBreakpointSize)) {
        // Still int3: keep its trap entry, so a thread reaching it is sent to the target the
        // entry names instead of dying of SIGTRAP. The next update's probe refuses the site.
        refused(w, "the final E8");
        slots[i] = UINT32_MAX;
        continue;
      }
      if (stage[i] == kTailWritten) {
        stage[i] = kDone;
        auto f = w.foreign ? m.foreignSites.find(w.site) : m.foreignSites.end();
        if (f != m.foreignSites.end()) f->second.field = arch::callFieldValue(arch::branchField(w.site), w.destination);
        m.notify(w.site, w.destination, SiteForm::kBreakpoint);
      }
    }
    if (!round.empty()) {
      syncAll();
      std::erase(slots, UINT32_MAX);
      traps.endRound(slots.data(), slots.size());
    }
    bpDone += bpCount;
    first = false;
  }
  return failure;
}

}  // namespace

Status Runtime::Impl::retarget(std::span<const KeyUpdate> updates, const void** previous, const UpdateOptions& how) {
  PATCHCALL_TRY(refuseReentry("update"));
  PATCHCALL_TRY(checkOwnProcess());
  if (updates.empty()) return Status::ok();
  detail::TestHooks* hooks = detail::testHooks();
  TextMutexGuard guard(textMutex, this);
  struct DropPlannedVeneers {  // every way out: a veneer planned and not written is forgotten
    Runtime::Impl& m;
    bool armed = true;  // off once published (the strict wait below runs unlocked)
    ~DropPlannedVeneers() {
      if (armed) m.dropPendingVeneers();
    }
  } dropPlanned{*this};

  Plan plan;
  while (true) {
    // ---- 2. validate and plan --------------------------------------------------------
    plan.direct.clear();
    plan.toggles.clear();
    plan.breakpoints.clear();
    plan.graceNeeded = 0;
    dropPendingVeneers();  // planned by an earlier pass or caller and never written
    plan.direct.reserve(2 * updates.size());  // each key: its trampoline and (usually) a site
    uint64_t batchStamp = ++batchCounter;  // marks keys seen in this pass (duplicate check)
    for (size_t i = 0; i < updates.size(); ++i) {
      const KeyUpdate& u = updates[i];
      detail::KeyRecord* k = key(u.key);
      if (k == nullptr) {
        return Status(Error::kUnknownKey, "update: key " + std::to_string(u.key.id) + " is not a live key");
      }
      if (k->batchStamp == batchStamp) {
        return Status(Error::kInvalidArgument, "updateBatch: key " + std::to_string(u.key.id) +
                                                   " appears twice in one batch");
      }
      k->batchStamp = batchStamp;
      k->pending = u.target;
      PATCHCALL_TRY(validateTarget(u.target));
      auto target = reinterpret_cast<uintptr_t>(u.target);
      Result<uintptr_t> tramp = reachable(k->trampoline, target);
      if (!tramp) return tramp.status();
      plan.direct.push_back({arch::branchField(k->trampoline), *tramp, k->trampoline, SiteForm::kDirect, target, true});
      for (uint32_t id : k->sites) {
        const SiteRecord& s = sites[id];
        if (s.form == SiteForm::kDirect) {
          Result<uintptr_t> d = reachable(s.address, target);
          if (!d) return d.status();
          plan.direct.push_back({arch::branchField(s.address), *d, s.address, SiteForm::kDirect, target, false});
        } else if (s.form == SiteForm::kToggle) {
          arch::ToggleLayout t = detail::toggleLayoutOf(s);
          bool bActive = arch::toggleSelectsB(t);
          uintptr_t inactive = bActive ? t.callA : t.callB;
          Result<uintptr_t> d = reachable(inactive, target);
          if (!d) return d.status();
          ToggleWrite w{id, s.address, arch::branchField(inactive), *d, {}, target};
          arch::toggleFlip(t, !bActive, w.flip);
          plan.toggles.push_back(w);
          auto flipped = toggleFlipSnap.find(id);
          if (flipped != toggleFlipSnap.end() && !quiescence->completed(flipped->second)) {
            plan.graceNeeded = std::max(plan.graceNeeded, flipped->second);
          }
        } else {
          Result<uintptr_t> d = reachable(s.address, target);
          if (!d) return d.status();
          plan.breakpoints.push_back({s.address, *d, target, (s.flags & detail::kSiteForeign) != 0});
        }
      }
    }
    for (const KeyUpdate& u : updates) PATCHCALL_TRY(checkTrampolineChain(u.key.id, u.target, batchStamp));
    // ---- 3. the toggle rule: a call is rewritten only a grace period after its last flip
    if (plan.graceNeeded == 0 || (hooks != nullptr && hooks->skipToggleGrace.load())) break;
    dropPendingVeneers();
    toggleGraceWaits.fetch_add(1, std::memory_order_relaxed);
    guard.unlock();  // other keys' updates are not held up while this one waits
    Status waited = quiescence->waitFor(plan.graceNeeded, quiescence->defaultDeadline());
    guard.lock();
    if (!waited.isOk()) return waited;
  }

  // ---- 2b. foreign sites: still mapped, still our call, still writable (before any write)
  for (const BreakpointWrite& w : plan.breakpoints) {
    if (!w.foreign) continue;
    uint8_t expected[arch::kCallSize];
    auto f = foreignSites.find(w.site);
    if (f == foreignSites.end()) continue;  // cannot happen: flagged foreign when registered
    arch::encodeCall(f->second.field, expected);  // what it holds since our last write
    PATCHCALL_TRY(probeForeignSite(w.site, expected, "update"));
  }
  Status written = writePlan(*this, plan, updates, hooks);
  if (written.code() == Error::kReentrantUpdate) return written;  // refused before any write
  dropPlanned.armed = false;  // published

  // ---- 7. publish ------------------------------------------------------------------------
  uint64_t flipSnap = plan.toggles.empty() ? 0 : quiescence->snapshot();
  for (const ToggleWrite& w : plan.toggles) toggleFlipSnap[w.siteId] = flipSnap;
  bool strict = how.strict;
  for (size_t i = 0; i < updates.size(); ++i) {
    detail::KeyRecord* k = key(updates[i].key);
    if (previous != nullptr) previous[i] = k->target;
    k->target = updates[i].target;
    strict = strict || k->strictUpdates;
  }
  retireOrphanVeneers();  // every call that named them was rewritten and synced
  updateCount.fetch_add(updates.size(), std::memory_order_relaxed);
  siteWrites.fetch_add(plan.direct.size() + plan.toggles.size() + plan.breakpoints.size(),
                       std::memory_order_relaxed);
  if (!written.isOk()) return written;

  // ---- 8. strict: the grace period after the flip ---------------------------------------
  // Only toggles need it: a thread past a toggle has no safepoint before its call, so once
  // every thread has passed one since the flip, none can still select the old call.
  if (!strict || plan.toggles.empty() || (hooks != nullptr && hooks->skipStrictGrace.load())) return Status::ok();
  Key firstKey = updates[0].key;
  guard.unlock();  // the update is complete; other updates need not wait for this one
  Status waited = quiescence->waitFor(flipSnap, how.deadline.value_or(options.graceDeadline));
  if (waited.isOk()) return waited;
  return Status(waited.code(), "strict update of key " + std::to_string(firstKey.id) +
                                   (updates.size() > 1 ? " (and the rest of its batch)" : "") +
                                   ": the update has taken effect (every site calls the new target), but a thread "
                                   "that passed a toggle before the flip may still enter the old target until its "
                                   "next safepoint: " + waited.message());
}

Status Runtime::Impl::patchSiteToKey(TextMutexGuard&, uint32_t siteId) {
  const SiteRecord& s = sites[siteId];
  auto target = reinterpret_cast<uintptr_t>(keys[s.key].target);
  dropPendingVeneers();
  Result<uintptr_t> d = reachable(s.address, target);
  if (!d) {
    dropPendingVeneers();
    return d.status();
  }
  Plan plan;
  plan.breakpoints.push_back({s.address, *d, target, (s.flags & detail::kSiteForeign) != 0});
  Status written = writePlan(*this, plan, {}, detail::testHooks());
  if (written.code() == Error::kReentrantUpdate) dropPendingVeneers();  // nothing was written
  if (written.isOk()) siteWrites.fetch_add(1, std::memory_order_relaxed);
  return written;
}

}  // namespace patchcall

// patchcall — the Retargeter: the update path, top to bottom (the steps: retargeter.h); the
// plan step is in retargeter_plan.cpp.
#include "retargeter.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <string>

#include "format.h"
#include "test_hooks.h"
#include "trap_table.h"

namespace patchcall::detail {

namespace {
// Set while this thread holds the process-wide breakpoint round (its patch observers run then).
thread_local bool tlsInTrapRound = false;
}  // namespace

// ---- update: the steps in order --------------------------------------------------------------

Status Retargeter::update(TextMutexGuard& guard, std::span<const KeyUpdate> updates, const void** previous,
                          const UpdateOptions& how) {
  if (updates.empty()) return Status::ok();
  TestHooks* hooks = testHooks();
  struct DropPlannedVeneers {  // every way out: a veneer planned and not written is forgotten
    Veneers& v;
    bool armed = true;  // off once published (the strict wait below runs unlocked)
    ~DropPlannedVeneers() {
      if (armed) v.dropPlanned();
    }
  } dropPlanned{veneers_};

  Plan plan;
  while (true) {
    Status planned = this->plan(updates, plan);
    // A veneer the plan needs may take a new chunk of the arena, which an arena still shared
    // with a fork relative does not hand out (kForkedChild): own the code, then plan again.
    if (planned.code() == Error::kForkedChild && writer_.codeShared()) {
      PATCHCALL_TRY(writer_.ownCode());
      planned = this->plan(updates, plan);
    }
    PATCHCALL_TRY(planned);
    if (plan.unchanged) {  // every key already has its target: nothing to write, no sync
      for (size_t i = 0; i < updates.size() && previous != nullptr; ++i) {
        const KeyRecord* k = registry_.key(updates[i].key);
        previous[i] = registry_.reported(*k, k->target);
      }
      if (how.publish == Publish::kDeferred || !publication_.pending()) return Status::ok();
      guard.unlock();  // an immediate update still publishes the deferred ones before it
      return publication_.publishAll(std::chrono::steady_clock::now() + how.deadline.value_or(options_.graceDeadline));
    }
    // awaitToggleGrace: a call is rewritten only a grace period after its toggle's last flip.
    if (plan.graceNeeded == 0 || (hooks != nullptr && hooks->skipToggleGrace.load())) break;
    veneers_.dropPlanned();
    toggleGraceWaits_.fetch_add(1, std::memory_order_relaxed);
    guard.unlock();  // other keys' updates are not held up while this one waits
    Status waited = quiescence_.waitFor(plan.graceNeeded, quiescence_.defaultDeadline());
    guard.lock();
    if (!waited.isOk()) return waited;
  }
  // Only now is a write certain: a no-op or refused update of a code arena still shared with a
  // fork relative leaves it shared (no copy). The plan step writes no code (a veneer chunk it
  // needs made it own the code above).
  PATCHCALL_TRY(writer_.ownCode());
  PATCHCALL_TRY(probeForeign(plan));
  Status written = write(plan);
  if (written.code() == Error::kReentrantUpdate) return written;  // refused before any write
  dropPlanned.armed = false;  // published
  uint64_t batch = publication_.wrote();  // numbered under the text mutex, after every write
  bool strict = how.strict || plan.strict;
  uint64_t flipSnap = publish(plan, previous, &strict);
  // jitdump's reload of the touched blobs needs the text mutex, which the last sync may drop.
  observe(plan);
  // The last sync. A breakpoint round's came inside write(), after every write so far.
  auto deadline = [&] { return std::chrono::steady_clock::now() + how.deadline.value_or(options_.graceDeadline); };
  bool locked = true;
  if (!plan.breakpoints.empty()) {
    if (written.isOk()) publication_.synced(batch);
  } else if (how.publish == Publish::kDeferred && !strict && !veneers_.hasOrphans()) {
    deferred_.fetch_add(updates.size(), std::memory_order_relaxed);
    publication_.deferred(batch);  // the background publisher's clock starts
  } else {
    // A deferred update that left a veneer without callers publishes now: see below.
    if (how.publish == Publish::kDeferred && !strict) deferred_.fetch_add(updates.size(), std::memory_order_relaxed);
    if (plan.toggles.empty()) guard.unlock(), locked = false;  // Direct-only: no mutex held across the sync
    if (hooks == nullptr || !hooks->skipSync.load()) {
      if (Status p = publication_.publishUpTo(batch, deadline()); !p.isOk() && written.isOk()) written = p;
    }
  }
  // Veneers no branch names any more are retired only now, once the rewrites are published:
  // their grace period must start after that. Retired before (a grace period that began, its
  // publication done, just before this batch was numbered), a thread running the old branch
  // (an unsynced core; qemu's stale translation) could enter a freed veneer: found by
  // DeferredPublication.DirectSitesFourCallersStayInTheWindow on aarch64, where every call
  // from the arena to C++ goes through a veneer.
  if (veneers_.hasOrphans()) {
    if (!locked) guard.lock(), locked = true;
    veneers_.retireOrphans();
  }
  if (!written.isOk()) return written;

  // strictWait: only toggles need it. A thread past a toggle has no safepoint before its
  // call, so once every thread has passed one since the flip, none can still take the old call.
  if (!strict || plan.toggles.empty() || (hooks != nullptr && hooks->skipStrictGrace.load())) return Status::ok();
  Key firstKey = updates[0].key;
  guard.unlock();  // the update is complete; other updates need not wait for this one
  Status waited = quiescence_.waitFor(flipSnap, how.deadline.value_or(options_.graceDeadline));
  if (waited.isOk()) return waited;
  return Status(waited.code(), "strict update of key " + std::to_string(firstKey.id) +
                                   (updates.size() > 1 ? " (and the rest of its batch)" : "") +
                                   ": the update has taken effect (every site calls the new target), but a thread "
                                   "that passed a toggle before the flip may still enter the old target until its "
                                   "next safepoint: " + waited.message());
}

Status Retargeter::patchSiteToKey(uint32_t siteId) {
  const SiteRecord& s = registry_.site(siteId);
  auto target = reinterpret_cast<uintptr_t>(registry_.keyAt(s.key).target);
  veneers_.dropPlanned();
  Result<uintptr_t> d = veneers_.destination(s.address, target);
  if (!d) {
    veneers_.dropPlanned();
    return d.status();
  }
  Plan plan;
  bool foreign = (s.flags & kSiteForeign) != 0;
  if (s.form == SiteForm::kDirect) {
    plan.direct.push_back({s.address, *d, target, false, foreign});
    plan.foreign = foreign;
  } else {
    plan.breakpoints.push_back({s.address, *d, target, foreign});
  }
  Status written = write(plan);
  if (written.code() == Error::kReentrantUpdate) veneers_.dropPlanned();  // nothing was written
  if (written.isOk() && plan.breakpoints.empty()) {
    // A Direct write leaves its sync to the caller (update's publish step): this is it.
    written = publication_.publishUpTo(publication_.wrote(), std::chrono::steady_clock::now() + options_.graceDeadline);
  }
  if (written.isOk()) siteWrites_.fetch_add(1, std::memory_order_relaxed);
  return written;
}

// ---- write -----------------------------------------------------------------------------------

// One write step: the syncs, the first failure, and the breakpoint rounds' state.
class Retargeter::Writing {
 public:
  Writing(Retargeter& r, const Plan& plan) : r_(r), plan_(plan), hooks_(testHooks()) {}
  Status failure;

  void sync() {
    if (hooks_ != nullptr && hooks_->skipSync.load()) return;
    // Past the first write there is no undoing: finish the protocol, report the first failure.
    if (int e = r_.writer_.sync().sync(); e != 0 && failure.isOk()) {
      failure = Status(Error::kSystemError, "update: the cross-core sync failed three times (" + std::string(std::strerror(e)) +
                                                ") after the code was written; the sites are retargeted, but other cores "
                                                "may run the old bytes until they next serialize");
    }
  }

  // Phase 1 without the breakpoints: target cells, Direct sites and trampolines, and each
  // toggle's inactive call (no thread takes it until the flip).
  void directAndInactive() {
    for (const KeyRecord* k : plan_.keys) r_.writer_.storeCell(arch::trampolineCell(k->trampoline), k->pending);
    for (const DirectWrite& w : plan_.direct) {
      uintptr_t field = w.field();
      int32_t value = w.jump ? arch::jumpFieldValue(field, w.destination) : arch::callFieldValue(field, w.destination);
      if (!w.foreign) {
        r_.writer_.storeField(field, value);
      } else if (r_.writer_.write(field, &value, arch::kFieldSize)) {  // one aligned store (arch::kForeignSiteForm)
        r_.foreign_.noteWritten(w.site, value);
      } else {
        refused(w.site, arch::kFieldName);  // the kernel stored nothing: the old call stays whole
        continue;
      }
      r_.writer_.notify(w.site, w.destination, SiteForm::kDirect);
    }
    for (const ToggleWrite& w : plan_.toggles) writeField(w.field, arch::callFieldValue(w.field, w.destination));
  }

  // Phase 2 for the toggles: one aligned store of the selector each.
  void flipToggles() {
    for (const ToggleWrite& w : plan_.toggles) {
      (void)r_.writer_.write(w.site, w.flip, arch::kToggleFlipSize);
      r_.writer_.notify(w.site, w.destination, SiteForm::kToggle);
    }
  }

  // One round of breakpoint sites (at most TrapTable::kMaxBatch): trap, tails, heads, finish.
  void beginRound(size_t first, size_t count) {
    round_ = std::span<const BreakpointWrite>(plan_.breakpoints.data() + first, count);
    slots_.clear();
    stage_.assign(count, kUntouched);
    for (const BreakpointWrite& w : round_) slots_.push_back(static_cast<uint32_t>(traps().publish(w.site, w.destination)));
    // Every entry is visible before any breakpoint it covers (the handler relies on it).
    if (!round_.empty()) traps().beginRound();
  }
  bool roundEmpty() const noexcept { return round_.empty(); }
  void trap() {
    for (size_t i = 0; i < round_.size(); ++i) {
      if (r_.writer_.write(round_[i].site, arch::kBreakpoint, arch::kBreakpointSize)) stage_[i] = kTrapped;
      else refused(round_[i].site, arch::kBreakpointName);  // untouched: the old call stays whole
    }
  }
  void afterTrapSync() const {
    if (!round_.empty() && hooks_ != nullptr && hooks_->afterBreakpointInt3.load() != nullptr) hooks_->afterBreakpointInt3.load()();
  }
  void writeTails() {
    for (size_t i = 0; i < round_.size(); ++i) {
      if (stage_[i] != kTrapped) continue;
      uintptr_t field = arch::branchField(round_[i].site);
      int32_t value = arch::callFieldValue(field, round_[i].destination);
      if (r_.writer_.write(field, &value, arch::kFieldSize)) {
        stage_[i] = kTailWritten;
        continue;
      }
      refused(round_[i].site, arch::kFieldName);
      // The tail may be half written: put the old one back before the call's head returns.
      if (int32_t old; r_.foreign_.lastField(round_[i].site, &old)) (void)r_.writer_.write(field, &old, arch::kFieldSize);
    }
  }
  void writeHeads() {
    for (size_t i = 0; i < round_.size(); ++i) {
      const BreakpointWrite& w = round_[i];
      if (stage_[i] == kUntouched) continue;
      if (!r_.writer_.write(w.site, arch::kCallHead, arch::kBreakpointSize)) {
        // Still a breakpoint: keep its trap entry, so a thread reaching it is sent to the
        // target the entry names instead of dying of SIGTRAP. The next probe refuses the site.
        refused(w.site, arch::kCallHeadName);
        slots_[i] = UINT32_MAX;
        continue;
      }
      if (stage_[i] != kTailWritten) continue;
      stage_[i] = kDone;
      if (w.foreign) r_.foreign_.noteWritten(w.site, arch::callFieldValue(arch::branchField(w.site), w.destination));
      r_.writer_.notify(w.site, w.destination, SiteForm::kBreakpoint);
    }
  }
  void finishRound() {
    std::erase(slots_, UINT32_MAX);
    traps().endRound(slots_.data(), slots_.size());
  }
  // Allocate before the first write: an out-of-memory must not interrupt a protocol.
  void reserve() {
    slots_.reserve(std::min(plan_.breakpoints.size(), TrapTable::kMaxBatch));
    stage_.reserve(slots_.capacity());
    for (const ToggleWrite& w : plan_.toggles) r_.registry_.toggleFlips().try_emplace(w.siteId, 0);
  }

 private:
  enum : uint8_t { kUntouched, kTrapped, kTailWritten, kDone };
  static TrapTable& traps() noexcept { return TrapTable::instance(); }

  // A toggle's inactive call, bytewise in test builds that widen the tear window.
  void writeField(uintptr_t field, int32_t value) {
    if (hooks_ == nullptr || hooks_->betweenBytes.load() == nullptr) return (void)r_.writer_.write(field, &value, arch::kFieldSize);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
    for (int b = 0; b < static_cast<int>(arch::kFieldSize); ++b) {
      (void)r_.writer_.write(field + static_cast<uintptr_t>(b), bytes + b, 1);
      hooks_->betweenBytes.load()(b);
    }
  }
  void refused(uintptr_t site, const char* what) {
    if (!failure.isOk()) return;
    failure = Status(Error::kUnsupportedSite, "update: the kernel refused to write the " + std::string(what) +
                                                  " of foreign site " + hex(site) + " through /proc/self/mem (" +
                                                  std::strerror(errno) + ") although the site passed its probe just "
                                                  "before (was its mapping changed meanwhile?); that site still calls "
                                                  "its old target, every other site was retargeted");
  }

  Retargeter& r_;
  const Plan& plan_;
  TestHooks* hooks_;
  std::span<const BreakpointWrite> round_;
  MiVector<uint32_t> slots_;
  MiVector<uint8_t> stage_;  // per round site: how far its writes got (foreign sites can fail)
};

Status Retargeter::write(const Plan& plan) {
  std::unique_lock<std::mutex> trapRound(TrapTable::instance().roundMutex(), std::defer_lock);
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
  Writing w(*this, plan);
  // New veneers are written and synced before any call points at them; their users move
  // before the first site write (allocation first).
  if (Status v = veneers_.publishPlanned(); !v.isOk()) w.failure = v;  // past validation: finish, report
  auto eachBranch = [&](auto&& f) {
    for (const DirectWrite& d : plan.direct) f(d.field(), d.destination, d.target);
    for (const ToggleWrite& t : plan.toggles) f(t.field, t.destination, t.target);
    for (const BreakpointWrite& b : plan.breakpoints) f(arch::branchField(b.site), b.destination, b.target);
  };
  // Without a veneer in the plan or in use, no branch's veneer reference moves (the common case).
  if (plan.viaVeneer || veneers_.hasUsers()) {
    eachBranch([&](uintptr_t f, uintptr_t d, uintptr_t t) { veneers_.reserveUser(f, d, t); });
    eachBranch([&](uintptr_t f, uintptr_t d, uintptr_t t) { veneers_.noteUser(f, d, t); });
  }
  w.reserve();

  // The first breakpoint round shares its three syncs with phase 1 and the toggles' flip;
  // further rounds (more sites than the trap table holds at once) take three syncs each.
  // Without breakpoint sites the last sync is left to the publication step.
  w.directAndInactive();
  size_t done = 0;
  do {
    size_t count = std::min(plan.breakpoints.size() - done, TrapTable::kMaxBatch);
    bool first = done == 0;
    w.beginRound(done, count);
    w.trap();
    // Phase 1. Without breakpoint sites and toggles this is the last sync: publish's.
    if (!plan.breakpoints.empty() || !plan.toggles.empty()) w.sync();
    w.afterTrapSync();
    if (first) w.flipToggles();
    w.writeTails();
    if (!w.roundEmpty()) w.sync();  // phase 2 (for toggles alone: the last sync, publish's)
    w.writeHeads();
    if (!w.roundEmpty()) {
      w.sync();  // phase 3
      w.finishRound();
    }
    done += count;
  } while (done < plan.breakpoints.size());
  return w.failure;
}

// ---- publish ---------------------------------------------------------------------------------

uint64_t Retargeter::publish(const Plan& plan, const void** previous, bool* strict) {
  uint64_t flipSnap = plan.toggles.empty() ? 0 : quiescence_.snapshot();
  for (const ToggleWrite& w : plan.toggles) {
    registry_.toggleFlips()[w.siteId] = flipSnap;
    registry_.site(w.siteId).flags ^= kSiteToggleOnB;  // the flip just written
  }
  for (size_t i = 0; i < plan.keys.size(); ++i) {
    KeyRecord* k = plan.keys[i];
    if (previous != nullptr) previous[i] = registry_.reported(*k, k->target);
    k->target = k->pending;
  }
  *strict = *strict || plan.strict;
  updates_.fetch_add(plan.keys.size(), std::memory_order_relaxed);
  siteWrites_.fetch_add(plan.writes(), std::memory_order_relaxed);
  return flipSnap;
}

void Retargeter::observe(const Plan& plan) {
  if (!observer_.jitDumpEnabled()) return;
  MiVector<const BlobRecord*> touched;
  auto note = [&](uintptr_t site) {
    const BlobRecord* b = registry_.blobContaining(site);
    if (b != nullptr && std::find(touched.begin(), touched.end(), b) == touched.end()) touched.push_back(b);
  };
  for (const DirectWrite& w : plan.direct) {
    if (!w.jump && !w.foreign) note(w.site);
  }
  for (const ToggleWrite& w : plan.toggles) note(w.site);
  for (const BreakpointWrite& w : plan.breakpoints) {
    if (!w.foreign) note(w.site);
  }
  for (const BlobRecord* b : touched) {
    forEachCodeEvent(*b, [&](const observe::CodeEvent& e) { observer_.blobChanged(e.start, e.size, e.name); });
  }
}

}  // namespace patchcall::detail

// patchcall — the Retargeter's plan step: every write an update needs, with each target
// resolved, validated and routed (directly or through a veneer), and the foreign sites among
// them probed; nothing is written here (retargeter.h).
#include <algorithm>
#include <string>

#include "retargeter.h"

namespace patchcall::detail {

Status Retargeter::plan(std::span<const KeyUpdate> updates, Plan& plan) {
  plan.keys.clear();
  plan.direct.clear();
  plan.toggles.clear();
  plan.breakpoints.clear();
  plan.graceNeeded = 0;
  plan.strict = false;
  plan.unchanged = true;
  plan.viaVeneer = false;
  plan.foreign = false;
  veneers_.dropPlanned();  // planned by an earlier pass or caller and never written
  plan.keys.reserve(updates.size());
  plan.direct.reserve(2 * updates.size());  // each key: its trampoline and (usually) a site
  uint64_t batchStamp = registry_.nextBatchStamp();  // marks keys seen in this pass (duplicate check)
  bool arenaTargets = false;  // only a target in the arena can lead through trampolines
  for (size_t i = 0; i < updates.size(); ++i) {
    const KeyUpdate& u = updates[i];
    KeyRecord* k = registry_.key(u.key);
    if (k == nullptr) return Status(Error::kUnknownKey, "update: key " + std::to_string(u.key.id) + " is not a live key");
    if (k->batchStamp == batchStamp) {
      return Status(Error::kInvalidArgument, "updateBatch: key " + std::to_string(u.key.id) + " appears twice in one batch");
    }
    k->batchStamp = batchStamp;
    k->pending = registry_.resolve(*k, u.target);
    plan.keys.push_back(k);
    plan.strict = plan.strict || k->strictUpdates;
    plan.unchanged = plan.unchanged && k->pending == k->target;
    // The common target (aligned code outside the arena) needs no further check.
    if (!registry_.plainTarget(k->pending)) {
      PATCHCALL_TRY(registry_.validateTarget(k->pending));
      arenaTargets = true;
    }
    auto target = reinterpret_cast<uintptr_t>(k->pending);
    // Where the branch at `insn` must point to reach the target (the plan notes a veneer).
    auto destination = [&](uintptr_t insn) {
      Result<uintptr_t> d = veneers_.destination(insn, target);
      if (d && *d != target) plan.viaVeneer = true;
      return d;
    };
    Result<uintptr_t> tramp = destination(k->trampoline);
    if (!tramp) return tramp.status();
    plan.direct.push_back({k->trampoline, *tramp, target, true, false});
    for (uint32_t id : k->sites) {
      const SiteRecord& s = registry_.site(id);
      if (s.form == SiteForm::kDirect) {
        Result<uintptr_t> d = destination(s.address);
        if (!d) return d.status();
        bool foreign = (s.flags & kSiteForeign) != 0;
        plan.foreign = plan.foreign || foreign;
        plan.direct.push_back({s.address, *d, target, false, foreign});
      } else if (s.form == SiteForm::kToggle) {
        arch::ToggleLayout t = toggleLayoutOf(s);
        bool bActive = (s.flags & kSiteToggleOnB) != 0;
        uintptr_t inactive = bActive ? t.callA : t.callB;
        Result<uintptr_t> d = destination(inactive);
        if (!d) return d.status();
        ToggleWrite w{id, s.address, arch::branchField(inactive), *d, {}, target};
        arch::toggleFlip(t, !bActive, w.flip);
        plan.toggles.push_back(w);
        auto flipped = registry_.toggleFlips().find(id);
        if (flipped != registry_.toggleFlips().end() && !quiescence_.completed(flipped->second)) {
          plan.graceNeeded = std::max(plan.graceNeeded, flipped->second);
        }
      } else {
        Result<uintptr_t> d = destination(s.address);
        if (!d) return d.status();
        plan.breakpoints.push_back({s.address, *d, target, (s.flags & kSiteForeign) != 0});
      }
    }
  }
  for (size_t i = 0; arenaTargets && i < updates.size(); ++i) {
    PATCHCALL_TRY(registry_.checkTrampolineChain(updates[i].key.id, plan.keys[i]->pending, batchStamp));
  }
  return Status::ok();
}

Status Retargeter::probeForeign(const Plan& plan) const {
  if (plan.foreign) {  // else no Direct write is a foreign site's: skip the pass
    for (const DirectWrite& w : plan.direct) {
      if (w.foreign) PATCHCALL_TRY(foreign_.probeBeforeUpdate(w.site));
    }
  }
  for (const BreakpointWrite& w : plan.breakpoints) {
    if (w.foreign) PATCHCALL_TRY(foreign_.probeBeforeUpdate(w.site));
  }
  return Status::ok();
}

}  // namespace patchcall::detail

// patchcall-stress — the JIT caller code: loops that call through patchable sites and check
// every result (see versions.h for the rule).
//
// Sites are split into groups of at most Options::groupSize; each group is one JIT function
//   uint64_t group(CallerFrame* frame, uint64_t iterations)
// that runs all its sites `iterations` times, with a safepoint poll every kPollEvery sites,
// and returns 0, or 1 + the index (within the group) of the first site whose result failed
// the check (the returned value and both version reads are left in *frame). Every thread
// runs every group (a thread hops between groups), so each site is executed concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "patchcall/jit.h"
#include "versions.h"

namespace stress {

// What the JIT caller reads and writes through its first argument. Offsets are part of the
// emitted code (bench/stress/<isa>/emit.cpp).
struct CallerFrame {
  const KeyCells* cells = nullptr;  // +0
  uint64_t returned = 0;            // +8: the failed call's result (rax, x0)
  uint64_t pre = 0;                 // +16: `end` read before it
  uint64_t post = 0;                // +24: `begin` read after it
  uint64_t yieldCountdown = 0;      // +32: --fibers: yield points left before the fiber yields
};
// Offset the emitted yield points decrement (isa.h).
constexpr int32_t kYieldCountdownOffset = 32;

using CallerFn = uint64_t (*)(CallerFrame* frame, uint64_t iterations);

// One site of the caller code, for reports and for mapping a fault address back to a site.
struct SiteMeta {
  uintptr_t begin = 0, end = 0;  // bytes the site occupies, alignment padding included
  uintptr_t call = 0;            // first byte of the site (the toggle for kToggle)
  uint32_t index = 0;            // global site index
  uint32_t key = 0;              // key index
  patchcall::SiteForm form = patchcall::SiteForm::kDirect;
};

struct CallerGroup {
  CallerFn fn = nullptr;
  patchcall::Blob blob;
  uint32_t firstSite = 0, count = 0;
  uint32_t perForm[3] = {0, 0, 0};  // sites of each form (indexed by SiteForm)
};

struct SitePlan {
  std::vector<patchcall::SiteForm> form;  // per site
  std::vector<uint32_t> key;              // per site: key index
};

class CallerCode {
 public:
  // Emits and installs every group. `keys` maps key index -> runtime key. `toggleStall`, when
  // set (fault tests), is called between each toggle and its call A to widen the toggle race.
  // `strictToggle` (--strict-toggle): each toggle site calls a stub of its key between the
  // toggle and call A that (after `toggleStall`, if set) re-reads the key's `end` into the
  // check's lower bound, so a call A that enters a target older than the last completed
  // update fails the check. `yield`, when set (--fibers), is a yield point after every
  // safepoint poll: decrement frame->yieldCountdown, call `yield` at zero.
  bool build(patchcall::Runtime& rt, const std::vector<patchcall::Key>& keys, const SitePlan& plan,
             int groupSize, void (*toggleStall)(), bool strictToggle, void (*yield)(), std::string* error);

  const std::vector<CallerGroup>& groups() const { return groups_; }
  const std::vector<SiteMeta>& sites() const { return sites_; }
  // The site whose bytes contain `address`, or a return address right after one (nullptr if
  // none). Async-signal-safe: a binary search over an immutable, sorted table.
  const SiteMeta* siteAt(uintptr_t address) const;
  const SiteMeta* siteReturningTo(uintptr_t returnAddress) const;
  bool contains(uintptr_t address) const;

 private:
  // --strict-toggle: one stub per key, called between a toggle and its call A.
  bool buildStrictStubs(patchcall::Runtime& rt, size_t keys, void (*toggleStall)(), std::string* error);
  std::vector<void (*)()> strictStubs_;
  std::vector<CallerGroup> groups_;
  std::vector<SiteMeta> sites_;  // sorted by address (groups are installed in order)
  std::vector<SiteMeta> sorted_;
};

}  // namespace stress

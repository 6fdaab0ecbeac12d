// patchcall — SIGTRAP handler and its lock-free site table.
#include "trap_table.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "arch/arch.h"
#include "test_hooks.h"

namespace patchcall::detail {
namespace {

using Entry = TrapTable::Entry;

Entry gEntries[TrapTable::kCapacity];
TrapTable::Generation gLingering[2];  // AOT batches' entries, by generation
std::atomic<uint64_t> gEmulated{0};
// Odd while a round is on (entries published, int3 possibly written); see onSigtrap.
std::atomic<uint64_t> gRoundSeq{0};
struct sigaction gPrevious;

// Scattered on purpose: an address-order slot (site >> 3) piles dense sites (5 bytes apart)
// into one probe cluster (measured on AOT batches, before they got their sorted generations:
// a 1,000-branch flip 8x slower).
size_t slotOf(uintptr_t site) noexcept {
  return static_cast<size_t>((site * 0x9E3779B97F4A7C15ull) >> 49) & (TrapTable::kCapacity - 1);
}

void chain(int sig, siginfo_t* info, void* ctx) {
  if ((gPrevious.sa_flags & SA_SIGINFO) != 0 && gPrevious.sa_sigaction != nullptr) {
    gPrevious.sa_sigaction(sig, info, ctx);
  } else if (gPrevious.sa_handler == SIG_IGN) {
    return;
  } else if (gPrevious.sa_handler != SIG_DFL && gPrevious.sa_handler != nullptr) {
    gPrevious.sa_handler(sig);
  } else {
    // Nobody else wants it: die exactly as an unhandled SIGTRAP would.
    signal(SIGTRAP, SIG_DFL);
    raise(SIGTRAP);
  }
}

void onSigtrap(int sig, siginfo_t* info, void* ctx) {
  // The context's registers and the trap's site: runtime/arch/<isa>/trap_emulation.h.
  if (info != nullptr && arch::isBreakpointTrap(info->si_code)) {
    uintptr_t site = arch::trapSite(ctx);
    // The handler can run long after the breakpoint (the thread may be preempted), so the
    // round that wrote it may be over -- and later rounds of the same site may have come and
    // gone. An entry means a round is on or has just ended (emulate the call: its target was
    // current during this call's window); a call means the breakpoint was replaced by the
    // complete new call (re-execute it). A breakpoint without an entry is ours only if a round
    // began or ended while we looked: the round sequence tells (rounds publish, then go odd,
    // then write the breakpoints; they write the calls' heads, sync, go even, then remove
    // entries). With the sequence unchanged every breakpoint we can see belongs to the round
    // whose entries we saw, so this one is not ours (a debugger's, the program's, int3 fill of
    // freed code): chain it. Only a round boundary inside these few loads costs another pass,
    // so no thread loses its call.
    TestHooks* hooks = testHooks();
    for (int pass = 0;; ++pass) {
      uint64_t before = gRoundSeq.load(std::memory_order_acquire);
      if (hooks != nullptr && hooks->inTrapHandler.load() != nullptr) hooks->inTrapHandler.load()(2 * pass);
      uintptr_t target = 0;
      TrapTable::Emulate how = TrapTable::Emulate::kCall;
      if (TrapTable::instance().lookup(site, &target, &how)) {
        if (how == TrapTable::Emulate::kCall) {
          arch::emulateCall(ctx, site, target);
        } else {
          arch::resumeAt(ctx, target);
        }
        gEmulated.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (hooks != nullptr && hooks->inTrapHandler.load() != nullptr) hooks->inTrapHandler.load()(2 * pass + 1);
      arch::SiteHolds holds = arch::siteHolds(site);
      if (holds == arch::SiteHolds::kCall) {
        arch::resumeAt(ctx, site);
        return;
      }
      if (holds != arch::SiteHolds::kBreakpoint || gRoundSeq.load(std::memory_order_acquire) == before) break;
    }
  }
  chain(sig, info, ctx);
}

}  // namespace

TrapTable& TrapTable::instance() {
  static TrapTable table;
  return table;
}

Status TrapTable::installHandler() {
  std::call_once(installOnce_, [this] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onSigtrap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTRAP, &sa, &gPrevious) != 0) {
      // Without the handler no breakpoint round may run: create() fails as a whole.
      installStatus_ = Status(Error::kSystemError, std::string("installing the SIGTRAP handler (for breakpoint-protocol "
                                                               "patches): sigaction(SIGTRAP) failed: ") + std::strerror(errno));
    }
  });
  return installStatus_;
}

namespace {

int64_t publishIn(Entry* table, uintptr_t site, uintptr_t target, TrapTable::Emulate how) noexcept {
  for (size_t i = slotOf(site), n = 0; n < TrapTable::kCapacity; ++n, i = (i + 1) & (TrapTable::kCapacity - 1)) {
    uintptr_t cur = table[i].site.load(std::memory_order_relaxed);
    if (cur == site || cur == 0) {
      table[i].target.store(target, std::memory_order_relaxed);
      table[i].how.store(static_cast<uint8_t>(how), std::memory_order_relaxed);
      table[i].site.store(site, std::memory_order_release);
      return static_cast<int64_t>(i);
    }
  }
  return -1;
}

bool lookupIn(const Entry* table, uintptr_t site, uintptr_t* target, TrapTable::Emulate* how) noexcept {
  for (size_t i = slotOf(site), n = 0; n < TrapTable::kCapacity; ++n, i = (i + 1) & (TrapTable::kCapacity - 1)) {
    uintptr_t cur = table[i].site.load(std::memory_order_acquire);
    if (cur == 0) return false;
    if (cur != site) continue;
    uintptr_t t = table[i].target.load(std::memory_order_acquire);
    auto h = static_cast<TrapTable::Emulate>(table[i].how.load(std::memory_order_acquire));
    // Re-check: a concurrent clear/reuse means the round is over (handled by the caller).
    if (table[i].site.load(std::memory_order_acquire) != site) return false;
    *target = t;
    *how = h;
    return true;
  }
  return false;
}

// A seqlock read: an entry counts only if the generation did not change while we looked.
bool lookupSorted(const TrapTable::Generation& g, uintptr_t site, uintptr_t* target, TrapTable::Emulate* how) noexcept {
  uint64_t seq = g.seq.load(std::memory_order_acquire);
  if ((seq & 1) != 0) return false;  // being replaced: its old entries are obsolete
  const size_t n = std::min<size_t>(g.count.load(std::memory_order_relaxed), TrapTable::kMaxBatch);
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (g.entries[mid].site.load(std::memory_order_relaxed) < site) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == n || g.entries[lo].site.load(std::memory_order_relaxed) != site) return false;
  uintptr_t t = g.entries[lo].target.load(std::memory_order_relaxed);
  auto h = static_cast<TrapTable::Emulate>(g.entries[lo].how.load(std::memory_order_relaxed));
  std::atomic_thread_fence(std::memory_order_acquire);
  if (g.seq.load(std::memory_order_relaxed) != seq) return false;  // the caller's round check retries
  *target = t;
  *how = h;
  return true;
}

}  // namespace

int64_t TrapTable::publish(uintptr_t site, uintptr_t target, Emulate how) noexcept {
  return publishIn(gEntries, site, target, how);
}

TrapTable::Generation& TrapTable::openLingering(unsigned generation) noexcept {
  Generation& g = gLingering[generation & 1];
  g.seq.store(g.seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // odd before any entry changes
  g.count.store(0, std::memory_order_relaxed);
  return g;
}

void TrapTable::closeLingering(Generation& g, size_t count) noexcept {
  g.count.store(static_cast<uint32_t>(count), std::memory_order_relaxed);
  g.seq.store(g.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void TrapTable::endLingeringRound() noexcept { gRoundSeq.fetch_add(1, std::memory_order_seq_cst); }

void TrapTable::beginRound() noexcept {
  // seq_cst RMW: every entry is visible before the sequence goes odd and before any int3.
  gRoundSeq.fetch_add(1, std::memory_order_seq_cst);
}

void TrapTable::endRound(const uint32_t* slots, size_t count) noexcept {
  // Even before the entries go: a handler that sees an entry missing also sees the change.
  gRoundSeq.fetch_add(1, std::memory_order_seq_cst);
  for (size_t k = 0; k < count; ++k) gEntries[slots[k]].site.store(0, std::memory_order_release);
}

bool TrapTable::lookup(uintptr_t site, uintptr_t* target, Emulate* how) const noexcept {
  // Either generation's entry will do: while its int3 was there, a site of a later batch held
  // the earlier batch's new instruction or its own, and both are right for a trap in between.
  return lookupIn(gEntries, site, target, how) || lookupSorted(gLingering[0], site, target, how) ||
         lookupSorted(gLingering[1], site, target, how);
}

bool TrapTable::callEmulationBlocked() noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->fakeShadowStack.load()) return true;
  static const bool blocked = arch::shadowStackEnabled();
  return blocked;
}

uint64_t TrapTable::emulated() const noexcept { return gEmulated.load(std::memory_order_relaxed); }

}  // namespace patchcall::detail

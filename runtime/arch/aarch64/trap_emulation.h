// patchcall aarch64 — the SIGTRAP side of the breakpoint protocol: which trap is patchcall's
// brk at a site, and how the handler makes the trapped thread continue (the ucontext's pc and
// x30). Compiled only for aarch64 (its mcontext). kBreakpointProtocol is false on A64, so the
// engine never writes a brk today; this file keeps the seam complete for foreign sites.
// Async-signal-safe: plain loads and stores only.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <ucontext.h>

#include "branch.h"

namespace patchcall::arch {

// A brk reports TRAP_BRKPT with pc at the brk itself (x86: SI_KERNEL, rip past the int3).
inline bool isBreakpointTrap(int siCode) noexcept { return siCode == TRAP_BRKPT; }

inline uintptr_t trapSite(const void* ctx) noexcept {
  return static_cast<uintptr_t>(static_cast<const ucontext_t*>(ctx)->uc_mcontext.pc);
}

// `bl target` from the site: the link register gets the site's end, pc the target (x86 pushes).
inline void emulateCall(void* ctx, uintptr_t site, uintptr_t target) noexcept {
  auto* uc = static_cast<ucontext_t*>(ctx);
  uc->uc_mcontext.regs[a64::kLr] = site + kCallSize;
  uc->uc_mcontext.pc = target;
}

// Whether the calling thread runs with a Guarded Control Stack (Linux 6.13+): emulateCall sets
// x30 only, so the callee's `ret` would fault on the GCS's mismatch. Not signal-safe.
inline bool shadowStackEnabled() noexcept {
  constexpr int kPrGetShadowStackStatus = 74;  // PR_GET_SHADOW_STACK_STATUS (linux/prctl.h, 6.13)
  unsigned long status = 0;
  return prctl(kPrGetShadowStackStatus, &status, 0, 0, 0) == 0 && (status & 1) != 0;  // PR_SHADOW_STACK_ENABLE
}

inline void resumeAt(void* ctx, uintptr_t site) noexcept { static_cast<ucontext_t*>(ctx)->uc_mcontext.pc = site; }

inline SiteHolds siteHolds(uintptr_t site) noexcept {
  uint32_t insn = __atomic_load_n(reinterpret_cast<const uint32_t*>(site), __ATOMIC_ACQUIRE);
  return a64::isBl(insn) ? SiteHolds::kCall : insn == a64::kPatchBrk ? SiteHolds::kBreakpoint : SiteHolds::kOther;
}

}  // namespace patchcall::arch

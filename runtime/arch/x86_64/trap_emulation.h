// patchcall x86-64 — the SIGTRAP side of the breakpoint protocol: which trap is an int3 at a
// site, and how the handler makes the trapped thread continue (the ucontext's rip and rsp).
// Async-signal-safe: plain loads and stores only.
#pragma once

#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "branch.h"

namespace patchcall::arch {

// An int3 reports SI_KERNEL with rip just past the 0xCC byte.
inline bool isBreakpointTrap(int siCode) noexcept { return siCode == SI_KERNEL; }

inline uintptr_t trapSite(const void* ctx) noexcept {
  const auto* uc = static_cast<const ucontext_t*>(ctx);
  return static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]) - kBreakpointSize;
}

// `call target` from the site: push the return address (the site's end), jump.
inline void emulateCall(void* ctx, uintptr_t site, uintptr_t target) noexcept {
  auto* uc = static_cast<ucontext_t*>(ctx);
  greg_t& rsp = uc->uc_mcontext.gregs[REG_RSP];
  rsp -= 8;
  *reinterpret_cast<uintptr_t*>(rsp) = site + kCallSize;
  uc->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(target);
}

// Whether the calling thread runs with a shadow stack (CET user shadow stacks, Linux 6.6+ with
// a glibc that enables them): emulateCall pushes the return address on the stack only, so the
// callee's `ret` would fault on the shadow stack's mismatch. Not signal-safe (a system call).
inline bool shadowStackEnabled() noexcept {
  constexpr int kArchShstkStatus = 0x5005;  // ARCH_SHSTK_STATUS (asm/prctl.h, Linux 6.6)
  unsigned long features = 0;
  return syscall(SYS_arch_prctl, kArchShstkStatus, &features) == 0 && (features & 1) != 0;  // ARCH_SHSTK_SHSTK
}

inline void resumeAt(void* ctx, uintptr_t site) noexcept {
  static_cast<ucontext_t*>(ctx)->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(site);
}

inline SiteHolds siteHolds(uintptr_t site) noexcept {
  uint8_t byte = __atomic_load_n(reinterpret_cast<const uint8_t*>(site), __ATOMIC_ACQUIRE);
  // Every complete instruction a protocol round leaves at a site: a call, or (AOT sites) a
  // jmp rel32 or the NOP5 (0F 1F 44 00 00).
  bool complete = byte == x86::kCallRel32 || byte == x86::kJmpRel32 || byte == x86::kNopRm[0];
  return complete ? SiteHolds::kCall : byte == x86::kInt3 ? SiteHolds::kBreakpoint : SiteHolds::kOther;
}

}  // namespace patchcall::arch

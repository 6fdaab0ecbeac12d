// patchcall aarch64 — the instructions of AOT static keys and calls (runtime/aot/): the NOP,
// `b imm26` and `bl imm26` a site holds, and the trampoline layout that
// include/patchcall/static_call_aot.h emits. Every site is one aligned word: the Arm ARM lets
// B, BL and NOP replace one another while other cores execute them, so a site is rewritten by
// one 32-bit store (aot::AotTextWriter: no BRK, no trap to emulate).
#pragma once

#include <cstring>

#include "branch.h"
#include "opcodes.h"
#include "patchcall/static_call_aot.h"

namespace patchcall::arch {

inline constexpr bool kStaticPatching = true;
inline constexpr size_t kStaticSiteSize = 4;

enum class StaticInsn : uint8_t { kNop, kJump, kCall, kOther };

inline void storeStaticInsn(uint32_t insn, uint8_t out[]) noexcept { std::memcpy(out, &insn, kStaticSiteSize); }
inline void encodeStaticNop(uint8_t out[]) noexcept { storeStaticInsn(a64::kNop, out); }
// A `b` / `bl` at `site` to `dest`; false when beyond imm26's +-128 MiB (or not word aligned).
inline bool encodeStaticBranch(uintptr_t site, uintptr_t dest, bool call, uint8_t out[]) noexcept {
  if (!inReach(site, dest)) return false;
  storeStaticInsn(a64::branchTo(call ? a64::kBl : a64::kB, site, dest), out);
  return true;
}
// What the word at `site` holds, and (b, bl) where it goes.
inline StaticInsn decodeStaticSite(uintptr_t site, const uint8_t bytes[], uintptr_t* dest) noexcept {
  uint32_t insn = a64::wordAt(bytes);
  if (insn == a64::kNop) return StaticInsn::kNop;
  if (!a64::isB(insn) && !a64::isBl(insn)) return StaticInsn::kOther;
  *dest = a64::branchDestination(site, insn);
  return a64::isBl(insn) ? StaticInsn::kCall : StaticInsn::kJump;
}

// The trampoline (PATCHCALL_STATIC_CALL_TRAMPOLINE_): its first `b` is the patched site; the
// indirect path (adrp/ldr of the call object's address, ldr of its target, br x16: x16 is
// AAPCS64's IP0, which a call may clobber on its way to the callee) is taken for a target out of
// `b` reach; a `ret` is the NULL target.
static_assert(PATCHCALL_SCT_INDIRECT == 8 && PATCHCALL_SCT_RET == 4 && PATCHCALL_SCT_SIZE == 32);
constexpr uintptr_t staticTrampolineIndirect(uintptr_t tramp) noexcept { return tramp + PATCHCALL_SCT_INDIRECT; }
constexpr uintptr_t staticTrampolineReturn(uintptr_t tramp) noexcept { return tramp + PATCHCALL_SCT_RET; }
// The trampoline's words after its first branch, as the header emits them: what registration
// checks before it patches anything.
inline bool isStaticTrampoline(const uint8_t* t) noexcept {
  using namespace a64;
  auto word = [t](size_t at) { return wordAt(t + at); };
  return isB(word(0)) && word(4) == kRet && (word(8) & kAdrpMask) == adrp(kX16) && (word(12) & kImm12Mask) == ldrXImm(kX16, kX16) &&
         word(16) == ldrXImm(kX16, kX16) && word(20) == br(kX16) && word(24) == kUdf0 && word(28) == kUdf0;
}

}  // namespace patchcall::arch

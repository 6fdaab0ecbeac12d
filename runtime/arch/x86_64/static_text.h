// patchcall x86-64 — the instructions of AOT static keys and calls (runtime/aot/): the
// 5-byte NOP, `jmp rel32` and `call rel32` a site holds, and the trampoline layout that
// include/patchcall/static_call_aot.h emits.
#pragma once

#include <cstring>

#include "branch.h"
#include "opcodes.h"
#include "patchcall/static_call_aot.h"

namespace patchcall::arch {

inline constexpr bool kStaticPatching = true;
inline constexpr size_t kStaticSiteSize = 5;
// nopl 0x0(%rax,%rax,1): the kernel's NOP5 (what a disabled branch costs).
inline constexpr uint8_t kStaticNop[kStaticSiteSize] = {x86::kNopRm[0], x86::kNopRm[1], 0x44, 0x00, 0x00};

enum class StaticInsn : uint8_t { kNop, kJump, kCall, kOther };

// The 5 bytes go out as one 4-byte and one 1-byte store (from a register), so the 4-byte
// compare that follows in the registry is forwarded instead of stalling on byte stores.
inline void storeStaticInsn(uint64_t bytes, uint8_t out[]) noexcept { std::memcpy(out, &bytes, kStaticSiteSize); }
inline void encodeStaticNop(uint8_t out[]) noexcept {
  uint64_t v = 0;
  std::memcpy(&v, kStaticNop, kStaticSiteSize);
  storeStaticInsn(v, out);
}
// A `jmp rel32` / `call rel32` at `site` to `dest`; false when beyond rel32 reach.
inline bool encodeStaticBranch(uintptr_t site, uintptr_t dest, bool call, uint8_t out[]) noexcept {
  int32_t rel = 0;
  if (!displacement32(site + kStaticSiteSize, dest, &rel)) return false;
  uint64_t op = call ? x86::kCallRel32 : x86::kJmpRel32;
  storeStaticInsn(op | (static_cast<uint64_t>(static_cast<uint32_t>(rel)) << 8), out);
  return true;
}
// What 5 bytes at `site` hold, and (jump, call) where they go.
inline StaticInsn decodeStaticSite(uintptr_t site, const uint8_t bytes[], uintptr_t* dest) noexcept {
  if (std::memcmp(bytes, kStaticNop, kStaticSiteSize) == 0) return StaticInsn::kNop;
  if (bytes[0] != x86::kJmpRel32 && bytes[0] != x86::kCallRel32) return StaticInsn::kOther;
  int32_t rel;
  std::memcpy(&rel, bytes + 1, sizeof rel);
  *dest = site + kStaticSiteSize + static_cast<int64_t>(rel);
  return bytes[0] == x86::kCallRel32 ? StaticInsn::kCall : StaticInsn::kJump;
}

// The trampoline (PATCHCALL_STATIC_CALL_TRAMPOLINE_): its first jmp is the patched site;
// the indirect path jumps through the call object's target field; a `ret` is the NULL target.
static_assert(PATCHCALL_SCT_INDIRECT == 8 && PATCHCALL_SCT_RET == 18 && PATCHCALL_SCT_SIZE == 32);
constexpr uintptr_t staticTrampolineIndirect(uintptr_t tramp) noexcept { return tramp + PATCHCALL_SCT_INDIRECT; }
constexpr uintptr_t staticTrampolineReturn(uintptr_t tramp) noexcept { return tramp + PATCHCALL_SCT_RET; }
// The trampoline's bytes after its first jump, as the header emits them: what registration
// checks before it patches anything.
inline bool isStaticTrampoline(const uint8_t* t) noexcept {
  static constexpr uint8_t kIndirectHead[3] = {0x4C, 0x8B, 0x1D};  // movq disp32(%rip), %r11
  static constexpr uint8_t kIndirectJump[3] = {0x41, 0xFF, 0x23};  // jmpq *(%r11)
  return (t[0] == x86::kJmpRel32) && std::memcmp(t + 8, kIndirectHead, 3) == 0 && std::memcmp(t + 15, kIndirectJump, 3) == 0 &&
         t[PATCHCALL_SCT_RET] == x86::kRet;
}

}  // namespace patchcall::arch

// patchcall aarch64 — the inline safepoint poll: `adrp x16, flag; ldrb w16, [x16, #lo12(flag)];
// cbnz w16, slow`.
// Scratch: x16 (IP0). AAPCS64 already lets any call clobber it (veneers, PLT stubs), so JIT
// code that keeps no value in x16 across a call keeps none across a poll either; the poll sets
// no flags (x86's cmp does) and reaches a flag within +-4 GiB (adrp). jit/ emits the cbnz and
// the out-of-line slow path: it saves x29/x30 (`stp x29, x30, [sp, #-16]!`), `bl`s the shared
// safepoint stub, restores them and branches back. AAPCS64 on Linux has no red zone, so the
// slow path steps over nothing (x86: 128 bytes).
#pragma once

#include <span>

#include "branch.h"

namespace patchcall::arch {

inline constexpr size_t kPollSize = 8;       // adrp + ldrb (the cbnz is the jit's, as x86's jne)
inline constexpr size_t kPollFlagField = 0;  // the adrp: fixed up with encodePollLoad (not a disp32)
inline constexpr int32_t kRedZoneSize = 0;

namespace a64 {
inline constexpr uint32_t kPollScratch = kX16;  // the register the loads use and jit/'s cbnz tests
inline constexpr uint32_t kPollAdrp = kAdrp | kPollScratch;                           // adrp x16, #0
inline constexpr uint32_t kPollLdrb = kLdrbImm | (kPollScratch << 5) | kPollScratch;  // ldrb w16, [x16]
inline constexpr uint8_t kPollLoad[kPollSize] = {bytesOf(kPollAdrp).b[0], bytesOf(kPollAdrp).b[1], bytesOf(kPollAdrp).b[2],
                                                 bytesOf(kPollAdrp).b[3], bytesOf(kPollLdrb).b[0], bytesOf(kPollLdrb).b[1],
                                                 bytesOf(kPollLdrb).b[2], bytesOf(kPollLdrb).b[3]};
inline constexpr int64_t kAdrpReach = int64_t{1} << 32;  // imm21 pages of 4 KiB
inline constexpr int64_t kCbReach = int64_t{1} << 20;    // imm19 words

// The poll's two loads at `at` for the flag byte at `flag`; false when out of adrp's reach.
constexpr bool encodePollLoad(uintptr_t at, uintptr_t flag, uint32_t out[2]) noexcept {
  int64_t pages = static_cast<int64_t>(flag >> 12) - static_cast<int64_t>(at >> 12);
  if (pages < -(kAdrpReach >> 12) || pages >= (kAdrpReach >> 12)) return false;
  auto imm = static_cast<uint32_t>(pages) & 0x1FFFFF;
  out[0] = kPollAdrp | (imm & 3) << 29 | (imm >> 2) << 5;
  out[1] = kPollLdrb | static_cast<uint32_t>(flag & 0xFFF) << 10;
  return true;
}
// `cbnz w16, slow` at `at` (the poll's third instruction); false when out of imm19's reach.
constexpr bool encodePollBranch(uintptr_t at, uintptr_t slow, uint32_t* out) noexcept {
  int64_t d = static_cast<int64_t>(slow) - static_cast<int64_t>(at);
  if (d % 4 != 0 || d < -kCbReach || d >= kCbReach) return false;
  *out = kCbnzW | (static_cast<uint32_t>(d / 4) & 0x7FFFF) << 5 | kPollScratch;
  return true;
}
}  // namespace a64

// The template: adrp/ldrb with zero immediates (x86: a zero disp32 at kPollFlagField).
inline std::span<const uint8_t> pollCompare() noexcept { return a64::kPollLoad; }

}  // namespace patchcall::arch

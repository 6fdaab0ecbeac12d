// patchcall x86-64 — the bytes of every site form.
//
//   Direct, Breakpoint   E8 rel32                     (Direct: rel32 4-byte aligned)
//   Toggle               [66 90 | EB xx][E8 stall]?[E8 A][EB 05][E8 B]
// The toggle's selector is 2-byte aligned, so one 16-bit store flips it: 66 90 (a 2-byte
// nop) falls into call A, whose `jmp +5` skips B; EB xx jumps straight to B. The stall call
// exists only in test builds (a thread stopped between selector and call A).
#pragma once

#include <span>

#include "branch.h"

namespace patchcall::arch {

inline constexpr size_t kToggleAlign = 2;
inline constexpr size_t kToggleFlipSize = 2;
inline constexpr size_t kStallGapSize = kCallSize;
inline constexpr size_t kToggleSize = kToggleFlipSize + kCallSize + 2 + kCallSize;  // 14
inline constexpr size_t kMaxNopPadding = 4;  // padding before a site needs 0..3 bytes

namespace x86 {
inline constexpr uint8_t kToggleSelectA[kToggleFlipSize] = {kOperandSize, kNop};
// [E8 A][EB 05][E8 B]: A's `jmp rel8` skips B.
inline constexpr uint8_t kToggleCalls[kCallSize + 2 + kCallSize] = {kCallRel32, 0, 0, 0, 0, kJmpRel8,
                                                                    kCallSize,  kCallRel32, 0, 0, 0, 0};
// Intel's recommended multi-byte NOPs, 1..3 bytes.
inline constexpr uint8_t kNops[kMaxNopPadding][3] = {{}, {kNop}, {kOperandSize, kNop}, {kNopRm[0], kNopRm[1], 0x00}};
}  // namespace x86

constexpr ToggleLayout toggleLayout(uintptr_t site, bool stallGap) noexcept {
  uintptr_t gap = stallGap ? kStallGapSize : 0;
  uintptr_t a = site + kToggleFlipSize + gap;
  return {site, a, a + kCallSize + 2, static_cast<uint8_t>(gap + kCallSize + 2)};
}

constexpr SiteCalls siteCalls(uintptr_t site, SiteForm form, bool stallGap) noexcept {
  if (form != SiteForm::kToggle) return {{site, 0}, 1};
  ToggleLayout t = toggleLayout(site, stallGap);
  return {{t.callA, t.callB}, 2};
}

constexpr size_t siteSize(SiteForm form, bool stallGap) noexcept {
  if (form != SiteForm::kToggle) return kCallSize;
  return kToggleSize + (stallGap ? kStallGapSize : 0);
}

constexpr bool fieldAligned(uintptr_t insn) noexcept { return branchField(insn) % kFieldAlign == 0; }

inline void toggleFlip(const ToggleLayout& t, bool selectB, uint8_t out[]) noexcept {
  out[0] = selectB ? x86::kJmpRel8 : x86::kToggleSelectA[0];
  out[1] = selectB ? t.jumpToB : x86::kToggleSelectA[1];
}

inline const uint8_t* nopPadding(size_t n) noexcept { return x86::kNops[n]; }
// E8 at 4k+3: its rel32 at 4k+4.
constexpr size_t directSiteRemainder() noexcept { return (kFieldAlign - (branchField(0) % kFieldAlign)) % kFieldAlign; }
inline std::span<const uint8_t> toggleSelectorInitial() noexcept { return x86::kToggleSelectA; }
inline std::span<const uint8_t> toggleCalls() noexcept { return x86::kToggleCalls; }

}  // namespace patchcall::arch

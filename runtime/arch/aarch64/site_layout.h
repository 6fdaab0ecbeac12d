// patchcall aarch64 — the instructions of every site form.
//
//   Direct               bl imm26                      (always aligned: one store retargets it)
//   Toggle, Breakpoint   refused (checkSiteBytes: kUnsupportedForm; see kUnsupportedFormWhy)
// The toggle's layout below exists so the seam is complete and a reader can compare it with
// x86's; it would be [nop | b B][bl stall]?[bl A][b +8][bl B], its selector one 4-byte store
// (NOP <-> B, both in the Arm ARM's permitted set). Nothing emits or installs it: a Direct site
// already gives every guarantee the toggle exists for.
#pragma once

#include <span>

#include "branch.h"

namespace patchcall::arch {

inline constexpr size_t kToggleAlign = 4;
inline constexpr size_t kToggleFlipSize = 4;
inline constexpr size_t kStallGapSize = kCallSize;
inline constexpr size_t kToggleSize = kToggleFlipSize + kCallSize + 4 + kCallSize;  // 16
inline constexpr size_t kMaxNopPadding = 1;  // sites never need padding (x86: 0..3 bytes)

namespace a64 {
inline constexpr uint8_t kToggleSelectA[kToggleFlipSize] = {bytesOf(kNop).b[0], bytesOf(kNop).b[1], bytesOf(kNop).b[2],
                                                            bytesOf(kNop).b[3]};
// [bl A][b +8][bl B]: A's `b +8` skips B.
inline constexpr uint32_t kSkipB = kB | 2;
inline constexpr uint8_t kToggleCalls[kCallSize + 4 + kCallSize] = {
    bytesOf(kBl).b[0],    bytesOf(kBl).b[1],    bytesOf(kBl).b[2],    bytesOf(kBl).b[3],
    bytesOf(kSkipB).b[0], bytesOf(kSkipB).b[1], bytesOf(kSkipB).b[2], bytesOf(kSkipB).b[3],
    bytesOf(kBl).b[0],    bytesOf(kBl).b[1],    bytesOf(kBl).b[2],    bytesOf(kBl).b[3]};
inline constexpr uint8_t kNoPadding[1] = {0};
}  // namespace a64

constexpr ToggleLayout toggleLayout(uintptr_t site, bool stallGap) noexcept {
  uintptr_t gap = stallGap ? kStallGapSize : 0;
  uintptr_t a = site + kToggleFlipSize + gap;
  return {site, a, a + kCallSize + 4, static_cast<uint8_t>(gap + kToggleFlipSize + kCallSize + 4)};
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

// The selector: `b callB` (jumpToB bytes ahead of the selector) or the nop that falls into A.
inline void toggleFlip(const ToggleLayout& t, bool selectB, uint8_t out[]) noexcept {
  uint32_t insn = selectB ? a64::branchTo(a64::kB, t.toggle, t.toggle + t.jumpToB) : a64::kNop;
  std::memcpy(out, &insn, kToggleFlipSize);
}

// site_layout.cpp (declared in arch.h as well: repeated so this header stands alone on any host).
size_t siteLength(SiteForm form, const uint8_t* at, size_t room) noexcept;
SiteCheck checkSiteBytes(SiteForm form, const uint8_t* at, bool* stallGap) noexcept;

inline const uint8_t* nopPadding(size_t) noexcept { return a64::kNoPadding; }
// Every instruction is aligned, so the emitter never pads (x86: E8 at 4k+3).
constexpr size_t directSiteRemainder() noexcept { return (kFieldAlign - (branchField(0) % kFieldAlign)) % kFieldAlign; }
inline std::span<const uint8_t> toggleSelectorInitial() noexcept { return a64::kToggleSelectA; }
inline std::span<const uint8_t> toggleCalls() noexcept { return a64::kToggleCalls; }

}  // namespace patchcall::arch

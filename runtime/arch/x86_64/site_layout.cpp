// patchcall x86-64 — recognizing the sites an emitter wrote (commitCode's check).
#include "../arch.h"

namespace patchcall::arch {

// The layout the emission tests decode (and earlier builds wrote as literals): pinned.
static_assert(siteSize(SiteForm::kToggle, false) == 14 && siteSize(SiteForm::kToggle, true) == 19);
static_assert(toggleLayout(0, false).callB == 9 && toggleLayout(0, false).jumpToB == 7);
static_assert(toggleLayout(0, true).callA == 7 && toggleLayout(0, true).jumpToB == 12);
static_assert(directSiteRemainder() == 3 && fieldAligned(3) && !fieldAligned(4));

namespace {
// A stall gap is a second E8 where a toggle without one has call A.
bool hasStallGap(const uint8_t* at) noexcept {
  return at[kToggleFlipSize] == x86::kCallRel32 && at[kToggleFlipSize + kStallGapSize] == x86::kCallRel32;
}
}  // namespace

size_t siteLength(SiteForm form, const uint8_t* at, size_t room) noexcept {
  if (form != SiteForm::kToggle) return kCallSize;
  return siteSize(form, room >= kToggleSize && hasStallGap(at));
}

SiteCheck checkSiteBytes(SiteForm form, const uint8_t* at, bool* stallGap) noexcept {
  if (form == SiteForm::kDirect || form == SiteForm::kBreakpoint) {
    if (!isCall(at)) return SiteCheck::kNotACall;
    if (form == SiteForm::kDirect && !fieldAligned(reinterpret_cast<uintptr_t>(at))) return SiteCheck::kUnalignedField;
    return SiteCheck::kOk;
  }
  if (form != SiteForm::kToggle) return SiteCheck::kUnresolvedForm;
  if (reinterpret_cast<uintptr_t>(at) % kToggleAlign != 0 || at[0] != x86::kToggleSelectA[0] ||
      at[1] != x86::kToggleSelectA[1]) {
    return SiteCheck::kMalformedToggle;
  }
  *stallGap = hasStallGap(at);
  ToggleLayout t = toggleLayout(reinterpret_cast<uintptr_t>(at), *stallGap);
  auto byteAt = [&](uintptr_t p) { return at[p - t.toggle]; };
  if (byteAt(t.callA) != x86::kCallRel32 || byteAt(t.callA + kCallSize) != x86::kJmpRel8 || byteAt(t.callB) != x86::kCallRel32) {
    return SiteCheck::kMalformedToggle;
  }
  return SiteCheck::kOk;
}

}  // namespace patchcall::arch

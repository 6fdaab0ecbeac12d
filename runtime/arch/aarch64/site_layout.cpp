// patchcall aarch64 — recognizing the sites an emitter wrote (commitCode's check).
// Includes the aarch64 headers directly (not arch.h), so tests/arch_aarch64/ builds it on x86.
#include "site_layout.h"

namespace patchcall::arch {

// The layout the emission tests decode: pinned.
static_assert(siteSize(SiteForm::kDirect, false) == 4 && siteSize(SiteForm::kToggle, false) == 16);
static_assert(toggleLayout(0, false).callB == 12 && toggleLayout(0, false).jumpToB == 12);
static_assert(toggleLayout(0, true).callA == 8 && toggleLayout(0, true).jumpToB == 16);
static_assert(directSiteRemainder() == 0 && fieldAligned(4) && !fieldAligned(2));

// Only Direct sites exist (site_layout.h): a toggle or breakpoint site is never installed, so
// no stall gap is ever read.
size_t siteLength(SiteForm form, const uint8_t*, size_t) noexcept { return siteSize(form, false); }

SiteCheck checkSiteBytes(SiteForm form, const uint8_t* at, bool* stallGap) noexcept {
  *stallGap = false;
  if (form == SiteForm::kToggle || form == SiteForm::kBreakpoint) return SiteCheck::kUnsupportedForm;
  if (form != SiteForm::kDirect) return SiteCheck::kUnresolvedForm;
  if (!isCall(at)) return SiteCheck::kNotACall;
  if (!fieldAligned(reinterpret_cast<uintptr_t>(at))) return SiteCheck::kUnalignedField;
  return SiteCheck::kOk;
}

}  // namespace patchcall::arch

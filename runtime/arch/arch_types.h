// patchcall — the plain types of the instruction-set seam (arch.h), apart from its functions.
//
// Every ISA folder's headers include this file, never arch.h, so a test on one host can
// include another ISA's pure encoders (tests/arch_aarch64/ decodes the A64 ones on x86-64).
#pragma once

#include <cstddef>
#include <cstdint>

#include "patchcall/options.h"

namespace patchcall::arch {

// The calls a site holds (a toggle has two; the others one), in address order.
struct SiteCalls {
  uintptr_t at[2];
  int count;
};
// The dual call of a toggle site at `site`: its selector, call A, call B.
struct ToggleLayout {
  uintptr_t toggle, callA, callB;
  uint8_t jumpToB;  // the selector's operand that selects B
};
// What checkSiteBytes found. kUnsupportedForm: the ISA has no such form (kUnsupportedFormWhy says why).
enum class SiteCheck : uint8_t { kOk, kNotACall, kUnalignedField, kMalformedToggle, kUnresolvedForm, kUnsupportedForm };
// What a site holds while the trap handler looks at it: kCall, a complete instruction a
// round writes (re-execute it), the round's breakpoint, or something else.
enum class SiteHolds : uint8_t { kCall, kBreakpoint, kOther };

}  // namespace patchcall::arch

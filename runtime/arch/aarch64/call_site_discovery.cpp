// patchcall aarch64 — no inline static call sites yet: the headers compile every static call
// to an indirect call (PATCHCALL_STATIC_PATCHING 0), so there is nothing to find.
#include "../../aot/call_site_discovery.h"

namespace patchcall::detail::aot {

bool findCallAfterMarker(uintptr_t, uintptr_t, uintptr_t, const std::function<bool(uintptr_t)>&, FoundCall*) { return false; }

}  // namespace patchcall::detail::aot

// patchcall aarch64 — inline static call sites (see runtime/aot/call_site_discovery.h). A64
// is fixed width, so walking forward from the marker word by word visits every instruction of
// the function; only a `bl`/`b` whose destination is the trampoline (or a bound PLT entry of
// it) qualifies.
#include "../../aot/call_site_discovery.h"

#include <cstring>

#include "branch.h"
#include "opcodes.h"

namespace patchcall::detail::aot {
namespace {

uint32_t wordAt(uintptr_t at) noexcept { return arch::a64::wordAt(reinterpret_cast<const uint8_t*>(at)); }

// `dest` is the trampoline, or a PLT entry (optionally `bti c` first)
//   adrp x16, <page>; ldr x17, [x16, #off]; add x16, x16, #off; br x17
// whose GOT slot already holds it (bound: -z now, or an earlier call).
bool reachesTrampoline(uintptr_t dest, uintptr_t trampoline) {
  using namespace arch::a64;
  if (dest == trampoline) return true;
  if (wordAt(dest) == kBtiC) dest += 4;
  uint32_t page = wordAt(dest), load = wordAt(dest + 4), add = wordAt(dest + 8), jump = wordAt(dest + 12);
  if ((page & kAdrpMask) != adrp(kX16) || (load & kImm12Mask) != ldrXImm(kX17, kX16) || (add & kImm12Mask) != addXImm(kX16, kX16) ||
      jump != br(kX17)) {
    return false;
  }
  uintptr_t slot = (dest & ~uintptr_t{0xFFF}) + static_cast<uintptr_t>(adrpPages(page) * 4096) + imm12Of(load) * 8;
  uintptr_t bound;
  std::memcpy(&bound, reinterpret_cast<const void*>(slot), sizeof bound);
  return bound == trampoline;
}

}  // namespace

bool findCallAfterMarker(uintptr_t marker, uintptr_t functionEnd, uintptr_t trampoline,
                         const std::function<bool(uintptr_t)>& taken, FoundCall* out) {
  uintptr_t ip = marker;
  for (int n = 0; n < kMaxDecodedAfterMarker && ip + 4 <= functionEnd; ++n, ip += 4) {
    uint32_t insn = wordAt(ip);
    if (!arch::a64::isBl(insn) && !arch::a64::isB(insn)) continue;
    uintptr_t dest = arch::a64::branchDestination(ip, insn);
    if (reachesTrampoline(dest, trampoline) && !taken(ip)) {
      out->address = ip;
      out->tail = arch::a64::isB(insn);
      out->original = dest;
      return true;
    }
  }
  return false;
}

}  // namespace patchcall::detail::aot

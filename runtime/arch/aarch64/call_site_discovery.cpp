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
  if (dest == trampoline) return true;
  constexpr uint32_t kBtiC = 0xD503245F;  // hint #34
  if (wordAt(dest) == kBtiC) dest += 4;
  uint32_t adrp = wordAt(dest), ldr = wordAt(dest + 4), add = wordAt(dest + 8), br = wordAt(dest + 12);
  constexpr uint32_t kAdrpMask = 0x9F00001F, kAdrpX16 = arch::a64::kAdrp | arch::a64::kX16;
  constexpr uint32_t kLdrMask = 0xFFC003FF, kLdrX17X16 = 0xF9400000 | arch::a64::kX16 << 5 | arch::a64::kX17;
  constexpr uint32_t kAddMask = 0xFFC003FF, kAddX16X16 = 0x91000000 | arch::a64::kX16 << 5 | arch::a64::kX16;
  if ((adrp & kAdrpMask) != kAdrpX16 || (ldr & kLdrMask) != kLdrX17X16 || (add & kAddMask) != kAddX16X16 ||
      br != (arch::a64::kBr | arch::a64::kX17 << 5)) {
    return false;
  }
  // adrp: immhi (bits 5..23) and immlo (bits 29..30) pages from the entry's page.
  int64_t pages = static_cast<int64_t>((((adrp >> 5) & 0x7FFFF) << 2) | ((adrp >> 29) & 3));
  pages = (pages << 43) >> 43;  // sign-extend 21 bits
  uintptr_t slot = (dest & ~uintptr_t{0xFFF}) + static_cast<uintptr_t>(pages * 4096) + ((ldr >> 10) & 0xFFF) * 8;
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

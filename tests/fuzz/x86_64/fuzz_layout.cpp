// tests/fuzz/fuzz_layout.h on x86-64 (runtime/arch/x86_64/): `E8 rel32` sites of every form,
// trampolines [target cell: 8][CC CC CC][E9 rel32], veneers `jmp qword [rip+0] ; .quad target`.
// Calls and jumps are decoded with Zydis (tests/support/x86_64/disasm.cpp).
#include "fuzz_layout.h"

#include <cstring>

#include "disasm.h"

namespace patchcall::fuzz::layout {

bool formRefused(SiteForm) { return false; }
SiteForm autoForm(size_t offset) { return (offset + 1) % 4 == 0 ? SiteForm::kDirect : SiteForm::kBreakpoint; }
SiteForm foreignForm() { return SiteForm::kBreakpoint; }
size_t siteSize(SiteForm form) { return form == SiteForm::kToggle ? 14 : 5; }
size_t instructionAlign() { return 1; }
bool directFieldAligned(const uint8_t* at) { return (reinterpret_cast<uintptr_t>(at) + 1) % 4 == 0; }

// [66 90 | EB 07][E8 A][EB 05][E8 B]: the selector falls into call A or jumps to call B.
const uint8_t* toggleSelectedCall(const uint8_t* at, std::string* problem) {
  bool a = at[0] == 0x66 && at[1] == 0x90, b = at[0] == 0xEB && at[1] == 7;
  if (!((a || b) && at[2] == 0xE8 && at[7] == 0xEB && at[8] == 5 && at[9] == 0xE8)) {
    *problem = "malformed toggle bytes";
    return nullptr;
  }
  if (reinterpret_cast<uintptr_t>(at) % 2 != 0) {
    *problem = "toggle not 2-byte aligned";
    return nullptr;
  }
  return b ? at + 9 : at + 2;
}

// The whole 16-byte slot is trampoline memory; the entry is the E9.
const size_t kSlotBeforeEntry = 11, kSlotAfterEntry = 5;
bool trampolineEntryAligned(const uint8_t* entry) { return (reinterpret_cast<uintptr_t>(entry) + 1) % 4 == 0; }

Branch readBranch(const uint8_t* insn, bool call) {
  test::Decoded d = test::decodeAt(insn);
  Branch b;
  b.ok = d.ok && d.opcode == (call ? 0xE8 : 0xE9) && d.length == 5 && d.isRelative;
  b.destination = reinterpret_cast<const uint8_t*>(d.target);
  b.text = d.text;
  return b;
}

std::optional<uint64_t> veneerTarget(const uint8_t* p) {
  if (p[0] != 0xFF || p[1] != 0x25 || p[2] != 0 || p[5] != 0) return std::nullopt;
  uint64_t quad = 0;
  std::memcpy(&quad, p + 6, 8);
  return quad;
}

bool inDirectReach(const uint8_t* insn, const void* target) {
  int64_t d = reinterpret_cast<intptr_t>(target) - reinterpret_cast<intptr_t>(insn + 5);
  return d >= INT32_MIN && d <= INT32_MAX;
}
uintptr_t displacementOrigin(const uint8_t* insn) { return reinterpret_cast<uintptr_t>(insn + 5); }
uint64_t directReach() { return uint64_t{1} << 31; }

}  // namespace patchcall::fuzz::layout

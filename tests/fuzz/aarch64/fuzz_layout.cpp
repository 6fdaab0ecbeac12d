// tests/fuzz/fuzz_layout.h on aarch64 (runtime/arch/aarch64/): Direct sites only (`bl imm26`,
// 4 bytes; emitCall and installCode refuse kToggle and kBreakpoint, kAuto is Direct), trampolines
// [target cell: 8][b imm26][udf #0], veneers `ldr x16, #8 ; br x16 ; .quad target`. The words
// are checked here; Capstone (tests/support/aarch64/disasm.cpp) names them in messages.
#include "fuzz_layout.h"

#include <cstring>

#include "disasm.h"

namespace patchcall::fuzz::layout {

namespace {
constexpr uint32_t kBl = 0x94000000, kB = 0x14000000, kImm26 = 0x03FFFFFF;
constexpr uint32_t kVeneerLoad = 0x58000050;    // ldr x16, #8
constexpr uint32_t kVeneerBranch = 0xD61F0200;  // br x16
constexpr int64_t kReach = int64_t{1} << 27;    // imm26 words: [-128 MiB, +128 MiB - 4]

uint32_t word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}
}  // namespace

bool formRefused(SiteForm form) { return form == SiteForm::kToggle || form == SiteForm::kBreakpoint; }
SiteForm autoForm(size_t) { return SiteForm::kDirect; }
SiteForm foreignForm() { return SiteForm::kDirect; }
size_t siteSize(SiteForm) { return 4; }
size_t instructionAlign() { return 4; }
bool directFieldAligned(const uint8_t* at) { return reinterpret_cast<uintptr_t>(at) % 4 == 0; }
const uint8_t* toggleSelectedCall(const uint8_t*, std::string* problem) {
  *problem = "a toggle site on aarch64, which refuses the form";
  return nullptr;
}

// The slot is 16 bytes, the entry (the b) after the 8-byte cell.
const size_t kSlotBeforeEntry = 8, kSlotAfterEntry = 8;
bool trampolineEntryAligned(const uint8_t* entry) { return reinterpret_cast<uintptr_t>(entry) % 4 == 0; }

Branch readBranch(const uint8_t* insn, bool call) {
  Branch b;
  test::Decoded d = test::decodeAt(insn);
  b.text = d.text;
  if (reinterpret_cast<uintptr_t>(insn) % 4 != 0) return b;
  uint32_t w = word(insn);
  b.ok = (w & ~kImm26) == (call ? kBl : kB);
  int64_t words = static_cast<int64_t>(static_cast<int32_t>(w << 6) >> 6);  // sign-extended imm26
  b.destination = insn + words * 4;
  return b;
}

std::optional<uint64_t> veneerTarget(const uint8_t* p) {
  if (word(p) != kVeneerLoad || word(p + 4) != kVeneerBranch) return std::nullopt;
  uint64_t quad = 0;
  std::memcpy(&quad, p + 8, 8);
  return quad;
}

bool inDirectReach(const uint8_t* insn, const void* target) {
  int64_t d = reinterpret_cast<intptr_t>(target) - reinterpret_cast<intptr_t>(insn);
  return d % 4 == 0 && d >= -kReach && d < kReach;
}
uintptr_t displacementOrigin(const uint8_t* insn) { return reinterpret_cast<uintptr_t>(insn); }
uint64_t directReach() { return uint64_t{1} << 27; }

}  // namespace patchcall::fuzz::layout

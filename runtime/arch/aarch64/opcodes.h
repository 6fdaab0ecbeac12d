// patchcall aarch64 — the A64 instructions patchcall writes or recognizes, by name.
// Every A64 instruction is one little-endian 32-bit word, 4-byte aligned. Only
// runtime/arch/aarch64/ includes this file.
#pragma once

#include <cstdint>

namespace patchcall::arch::a64 {

// Registers: x16/x17 are AAPCS64's IP0/IP1 (intra-procedure-call scratch: a linker veneer or
// PLT stub may clobber them between any call and its callee), x30 the link register.
inline constexpr uint32_t kX0 = 0, kX16 = 16, kX17 = 17, kX18 = 18, kFp = 29, kLr = 30, kSp = 31;

inline constexpr uint32_t kBl = 0x94000000;          // bl imm26 (x30 = pc + 4)
inline constexpr uint32_t kB = 0x14000000;           // b imm26
inline constexpr uint32_t kBranchImmMask = 0xFC000000;  // the opcode bits of b/bl
inline constexpr uint32_t kImm26 = 0x03FFFFFF;
inline constexpr uint32_t kBrk = 0xD4200000;         // brk #imm16 (imm16 << 5)
inline constexpr uint32_t kBrkMask = 0xFFE0001F;
inline constexpr uint32_t kNop = 0xD503201F;         // nop (hint #0)
inline constexpr uint32_t kYield = 0xD503203F;       // yield (hint #1)
inline constexpr uint32_t kUdf0 = 0x00000000;        // udf #0: permanently undefined (SIGILL)
inline constexpr uint32_t kLdrLiteralX = 0x58000000; // ldr xt, pc + imm19 * 4
inline constexpr uint32_t kBr = 0xD61F0000;          // br xn (xn << 5)
inline constexpr uint32_t kBlr = 0xD63F0000;         // blr xn (xn << 5)
inline constexpr uint32_t kRet = 0xD65F03C0;         // ret (x30)
inline constexpr uint32_t kAdrp = 0x90000000;        // adrp xd, page(pc) + imm21 pages
inline constexpr uint32_t kLdrbImm = 0x39400000;     // ldrb wt, [xn, #imm12]
inline constexpr uint32_t kCbzW = 0x34000000;        // cbz wt, pc + imm19 * 4
inline constexpr uint32_t kCbnzW = 0x35000000;       // cbnz wt, pc + imm19 * 4

// The breakpoint patchcall would write (brk #0x5043, "PC"; gdb uses #0, the kernel's kprobes
// #0x004), so a trap names its origin.
inline constexpr uint32_t kBrkImm = 0x5043;
inline constexpr uint32_t kPatchBrk = kBrk | (kBrkImm << 5);

// The words of a static call's trampoline and of a PLT entry (runtime/aot/), with their
// immediates masked out: adrp's immlo/immhi, the 12-bit unsigned offset of ldr/add.
inline constexpr uint32_t kAdrpMask = 0x9F00001F;     // opcode + rd
inline constexpr uint32_t kLdrXImm = 0xF9400000;      // ldr xt, [xn, #imm12 * 8]
inline constexpr uint32_t kAddXImm = 0x91000000;      // add xd, xn, #imm12
inline constexpr uint32_t kImm12Mask = 0xFFC003FF;    // ldr/add without their imm12
inline constexpr uint32_t kBtiC = 0xD503245F;         // bti c (hint #34)
constexpr uint32_t adrp(uint32_t rd) noexcept { return kAdrp | rd; }
constexpr uint32_t ldrXImm(uint32_t rt, uint32_t rn) noexcept { return kLdrXImm | rn << 5 | rt; }
constexpr uint32_t addXImm(uint32_t rd, uint32_t rn) noexcept { return kAddXImm | rn << 5 | rd; }
constexpr uint32_t br(uint32_t rn) noexcept { return kBr | rn << 5; }
constexpr uint32_t imm12Of(uint32_t insn) noexcept { return (insn >> 10) & 0xFFF; }
// adrp's signed page count (immhi: bits 5..23, immlo: bits 29..30).
constexpr int64_t adrpPages(uint32_t insn) noexcept {
  auto imm = static_cast<int64_t>((((insn >> 5) & 0x7FFFF) << 2) | ((insn >> 29) & 3));
  return imm >= (int64_t{1} << 20) ? imm - (int64_t{1} << 21) : imm;
}

constexpr bool isBl(uint32_t insn) noexcept { return (insn & kBranchImmMask) == kBl; }
constexpr bool isB(uint32_t insn) noexcept { return (insn & kBranchImmMask) == kB; }

// The 4 little-endian bytes of an instruction (the engine copies bytes, not words).
struct InsnBytes {
  uint8_t b[4];
};
constexpr InsnBytes bytesOf(uint32_t insn) noexcept {
  return {{static_cast<uint8_t>(insn), static_cast<uint8_t>(insn >> 8), static_cast<uint8_t>(insn >> 16),
           static_cast<uint8_t>(insn >> 24)}};
}
constexpr uint32_t wordAt(const uint8_t* p) noexcept {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

}  // namespace patchcall::arch::a64

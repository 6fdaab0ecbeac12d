// patchcall aarch64 — `bl imm26` / `b imm26`: sizes, the field and its arithmetic.
// The field a retarget rewrites is the whole instruction: one aligned 32-bit store replaces a
// BL with another BL, which the Arm ARM permits while other cores execute it: "Concurrent
// modification and execution of instructions" (B2.6.5 in the ARMv8-A ARM issue A.a, as Linux's
// arch/arm64/kernel/insn.c quotes it; the permitted set is B, BL, NOP, BRK, SVC, HVC, SMC, and
// ISB in later issues). The imm26 counts words from the instruction itself (x86: bytes from
// the end of the instruction).
#pragma once

#include <climits>
#include <cstring>

#include "../arch_types.h"
#include "opcodes.h"

namespace patchcall::arch {

inline constexpr size_t kCallSize = 4;    // bl imm26
inline constexpr size_t kFieldSize = 4;   // the whole instruction (opcode + imm26)
inline constexpr size_t kFieldAlign = 4;  // every A64 instruction is: one single-copy atomic store
inline constexpr uint8_t kFillByte = 0x00;  // 00000000 is `udf #0`: freed code traps (SIGILL)
// Every instruction is: a BL to anything else would silently land on the word below it.
inline constexpr size_t kInstructionAlign = 4;
inline constexpr size_t kBreakpointSize = 4;  // a whole instruction (x86: the first byte)
inline constexpr uint8_t kBreakpoint[kBreakpointSize] = {a64::bytesOf(a64::kPatchBrk).b[0], a64::bytesOf(a64::kPatchBrk).b[1],
                                                         a64::bytesOf(a64::kPatchBrk).b[2], a64::bytesOf(a64::kPatchBrk).b[3]};
// The breakpoint protocol puts the call's head back last; an A64 call has no separate head (its
// field is the whole instruction), so this is only the opcode with imm26 0 (never written).
inline constexpr uint8_t kCallHead[kBreakpointSize] = {a64::bytesOf(a64::kBl).b[0], a64::bytesOf(a64::kBl).b[1],
                                                       a64::bytesOf(a64::kBl).b[2], a64::bytesOf(a64::kBl).b[3]};
// Words for messages: the patchable call, its field, the breakpoint, the call's head.
inline constexpr const char kCallName[] = "4-byte `bl imm26` (94000000)";
inline constexpr const char kFieldName[] = "bl instruction";
inline constexpr const char kBreakpointName[] = "brk #0x5043";
inline constexpr const char kCallHeadName[] = "bl opcode";
// Only Direct: every emitted site is an aligned BL, which one store retargets. The toggle and
// the breakpoint protocol exist for x86 sites one store cannot cover; on A64 they would only
// add a second way to do the same, so they are refused (commitCode, foreign sites).
inline constexpr bool kBreakpointProtocol = false;
// A foreign BL is rewritten like an emitted one, by one aligned 32-bit store, through
// /proc/self/mem: the kernel's write (access_remote_vm -> copy_to_user_page) is memcpy into
// the page, then cache maintenance for an executable vma (flush_ptrace_access). arm64's memcpy
// (arch/arm64/lib/memcpy.S, Arm's optimized routines since 5.14) copies 4..7 bytes as a load
// and store of the first and of the last word, so a 4-byte aligned write is the same aligned
// 32-bit store twice (before 5.14, copy_template.S: one `str w`); an aligned word store is
// single-copy atomic. So the Direct protocol, and no BRK (which could not help: a torn 4-byte
// write would tear a BRK as well).
inline constexpr SiteForm kForeignSiteForm = SiteForm::kDirect;
inline constexpr const char kUnsupportedFormWhy[] =
    "aarch64 has only Direct sites: every BL is aligned and one store retargets it "
    "(use SiteForm::kDirect or kAuto)";

inline constexpr int64_t kBranchReach = int64_t{1} << 27;  // imm26 words: [-128 MiB, +128 MiB - 4]

constexpr uintptr_t branchField(uintptr_t insn) noexcept { return insn; }

constexpr bool displacement32(uintptr_t from, uintptr_t to, int32_t* out) noexcept {
  int64_t d = static_cast<int64_t>(to) - static_cast<int64_t>(from);
  if (d < INT32_MIN || d > INT32_MAX) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

// A word-aligned destination within imm26 words of the branch itself.
constexpr bool inReach(uintptr_t insn, uintptr_t destination) noexcept {
  int64_t d = static_cast<int64_t>(destination) - static_cast<int64_t>(insn);
  return d % 4 == 0 && d >= -kBranchReach && d < kBranchReach;
}

namespace a64 {
// `op` (kBl or kB) at `insn` to `destination`; truncates like the hardware, callers check inReach.
constexpr uint32_t branchTo(uint32_t op, uintptr_t insn, uintptr_t destination) noexcept {
  int64_t words = (static_cast<int64_t>(destination) - static_cast<int64_t>(insn)) / 4;
  return op | (static_cast<uint32_t>(words) & kImm26);
}
// Where the b/bl `insn` at `at` lands.
constexpr uintptr_t branchDestination(uintptr_t at, uint32_t insn) noexcept {
  int64_t words = static_cast<int64_t>(static_cast<int32_t>((insn & kImm26) << 6) >> 6);  // sign-extend imm26
  return at + static_cast<uintptr_t>(words * 4);
}
}  // namespace a64

// The field is the instruction, so its value is the whole BL (or, for the trampoline, B).
constexpr int32_t callFieldValue(uintptr_t field, uintptr_t destination) noexcept {
  return static_cast<int32_t>(a64::branchTo(a64::kBl, field, destination));
}
constexpr int32_t jumpFieldValue(uintptr_t field, uintptr_t destination) noexcept {
  return static_cast<int32_t>(a64::branchTo(a64::kB, field, destination));
}

inline void encodeCall(int32_t field, uint8_t out[]) noexcept { std::memcpy(out, &field, kFieldSize); }

constexpr bool isCall(const uint8_t* bytes) noexcept { return a64::isBl(a64::wordAt(bytes)); }

inline uintptr_t callDestination(uintptr_t insn, const uint8_t* bytes) noexcept {
  return a64::branchDestination(insn, a64::wordAt(bytes));
}

}  // namespace patchcall::arch

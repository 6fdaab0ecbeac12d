// patchcall x86-64 — the stubs patchcall writes into the arena.
//
//   trampoline slot (16)  [target cell: 8][CC CC CC][E9 rel32]
//                         the cell 8-byte aligned, the rel32 4-byte aligned (one store)
//   veneer (16)           FF 25 00000000 <target: 8> CC CC    jmp qword [rip+0]; .quad target
//   no-op target          C3                                  ret
//   return-0 target       31 C0 C3                            xor eax, eax ; ret (rax = 0)
#pragma once

#include <span>

#include "branch.h"

namespace patchcall::arch {

inline constexpr size_t kTrampolineSlotSize = 16;
inline constexpr size_t kVeneerSize = 16;

namespace x86 {
inline constexpr uintptr_t kTrampolineEntryOffset = 11;  // cell (8) + int3 padding (3)
inline constexpr uint8_t kTrampolineJump[1] = {kJmpRel32};
inline constexpr size_t kVeneerTargetOffset = 6;  // FF 25 disp32
}  // namespace x86

constexpr uintptr_t trampolineEntry(uintptr_t slot) noexcept { return slot + x86::kTrampolineEntryOffset; }
constexpr uintptr_t trampolineCell(uintptr_t entry) noexcept { return entry - x86::kTrampolineEntryOffset; }
inline std::span<const uint8_t> trampolineJumpHead() noexcept { return x86::kTrampolineJump; }

namespace x86 {
inline constexpr uint8_t kRetStub[1] = {kRet};
inline constexpr uint8_t kReturnZeroStub[3] = {kXorEaxEax[0], kXorEaxEax[1], kRet};  // rax = 0 (zero-extended)
}  // namespace x86
inline std::span<const uint8_t> noopStub() noexcept { return x86::kRetStub; }
inline std::span<const uint8_t> returnZeroStub() noexcept { return x86::kReturnZeroStub; }

inline void encodeVeneer(uintptr_t target, uint8_t out[]) noexcept {
  std::memset(out, kFillByte, kVeneerSize);
  out[0] = x86::kJmpIndirect[0];
  out[1] = x86::kJmpIndirect[1];
  std::memset(out + 2, 0, 4);  // disp32 0: the quad follows the instruction
  std::memcpy(out + x86::kVeneerTargetOffset, &target, 8);
}

inline uintptr_t veneerTarget(uintptr_t veneer) noexcept {
  uintptr_t target;
  std::memcpy(&target, reinterpret_cast<const void*>(veneer + x86::kVeneerTargetOffset), 8);
  return target;
}

}  // namespace patchcall::arch

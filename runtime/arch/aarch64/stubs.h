// patchcall aarch64 — the stubs patchcall writes into the arena.
//
//   trampoline slot (16)  [target cell: 8][b imm26][udf #0]
//                         the cell 8-byte aligned, the b 4-byte aligned (one store)
//   veneer (16)           ldr x16, #8; br x16; .quad target
//                         x16 is IP0: AAPCS64 lets a veneer between a call and its callee
//                         clobber x16/x17 (the linker's own veneers do), so no caller keeps
//                         a value there across a call
//   no-op target          D65F03C0                            ret
//   return-0 target       D2800000 D65F03C0                   mov x0, #0 ; ret
// (noopStub/returnZeroStub: main's kernel static_call parity, arch.h there; unused here until
// this branch meets it.)
#pragma once

#include <span>

#include "branch.h"

namespace patchcall::arch {

inline constexpr size_t kTrampolineSlotSize = 16;
inline constexpr size_t kVeneerSize = 16;

namespace a64 {
inline constexpr uintptr_t kTrampolineEntryOffset = 8;  // the cell (8); the b follows it directly
inline constexpr uint8_t kTrampolineJump[1] = {0};      // no head: the field is the whole b
inline constexpr size_t kVeneerTargetOffset = 8;        // ldr + br
inline constexpr uint32_t kVeneerLoad = kLdrLiteralX | (2u << 5) | kX16;  // ldr x16, pc + 8
inline constexpr uint32_t kVeneerBranch = kBr | (kX16 << 5);             // br x16
}  // namespace a64

constexpr uintptr_t trampolineEntry(uintptr_t slot) noexcept { return slot + a64::kTrampolineEntryOffset; }
constexpr uintptr_t trampolineCell(uintptr_t entry) noexcept { return entry - a64::kTrampolineEntryOffset; }
// Empty: the engine then stores the whole `b` as the jump's field (x86 writes E9 first).
inline std::span<const uint8_t> trampolineJumpHead() noexcept { return {a64::kTrampolineJump, 0}; }

namespace a64 {
inline constexpr uint32_t kMovX0Zero = 0xD2800000;  // movz x0, #0
inline constexpr uint8_t kRetStub[4] = {bytesOf(kRet).b[0], bytesOf(kRet).b[1], bytesOf(kRet).b[2], bytesOf(kRet).b[3]};
inline constexpr uint8_t kReturnZeroStub[8] = {bytesOf(kMovX0Zero).b[0], bytesOf(kMovX0Zero).b[1], bytesOf(kMovX0Zero).b[2],
                                               bytesOf(kMovX0Zero).b[3], bytesOf(kRet).b[0],        bytesOf(kRet).b[1],
                                               bytesOf(kRet).b[2],       bytesOf(kRet).b[3]};
}  // namespace a64
inline std::span<const uint8_t> noopStub() noexcept { return a64::kRetStub; }
inline std::span<const uint8_t> returnZeroStub() noexcept { return a64::kReturnZeroStub; }

inline void encodeVeneer(uintptr_t target, uint8_t out[]) noexcept {
  std::memset(out, kFillByte, kVeneerSize);
  std::memcpy(out, &a64::kVeneerLoad, 4);
  std::memcpy(out + 4, &a64::kVeneerBranch, 4);
  std::memcpy(out + a64::kVeneerTargetOffset, &target, 8);
}

inline uintptr_t veneerTarget(uintptr_t veneer) noexcept {
  uintptr_t target;
  std::memcpy(&target, reinterpret_cast<const void*>(veneer + a64::kVeneerTargetOffset), 8);
  return target;
}

}  // namespace patchcall::arch

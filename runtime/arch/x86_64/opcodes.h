// patchcall x86-64 — the opcode bytes patchcall writes or recognizes, by name.
// Only runtime/arch/x86_64/ includes this file.
#pragma once

#include <cstdint>

namespace patchcall::arch::x86 {

inline constexpr uint8_t kCallRel32 = 0xE8;  // call rel32
inline constexpr uint8_t kJmpRel32 = 0xE9;   // jmp rel32
inline constexpr uint8_t kJmpRel8 = 0xEB;    // jmp rel8
inline constexpr uint8_t kInt3 = 0xCC;       // int3 (SIGTRAP, si_code SI_KERNEL)
inline constexpr uint8_t kNop = 0x90;        // nop
inline constexpr uint8_t kOperandSize = 0x66;                // prefix: 66 90 is a 2-byte nop
inline constexpr uint8_t kNopRm[2] = {0x0F, 0x1F};           // nop r/m (0F 1F /0)
inline constexpr uint8_t kJmpIndirect[2] = {0xFF, 0x25};     // jmp qword [rip+disp32]
inline constexpr uint8_t kCmpByteRipImm8[2] = {0x80, 0x3D};  // cmp byte [rip+disp32], imm8
inline constexpr uint8_t kRet = 0xC3;                        // ret
inline constexpr uint8_t kXorEaxEax[2] = {0x31, 0xC0};       // xor eax, eax

}  // namespace patchcall::arch::x86

// patchcall x86-64 — the inline safepoint poll: `cmp byte [rip+flag], 0 ; jne slow`.
// jit/ emits the jne and the out-of-line slow path with asmjit; the slow path steps rsp over
// the SysV red zone (the call's return address and the stub's frame would land in it).
#pragma once

#include <span>

#include "opcodes.h"

namespace patchcall::arch {

inline constexpr size_t kPollSize = 7;       // 80 3D disp32 00
inline constexpr size_t kPollFlagField = 2;  // the disp32, relative to the poll's end
inline constexpr int32_t kRedZoneSize = 128;

namespace x86 {
inline constexpr uint8_t kPollCompare[kPollSize] = {kCmpByteRipImm8[0], kCmpByteRipImm8[1], 0, 0, 0, 0, 0x00};
}  // namespace x86

inline std::span<const uint8_t> pollCompare() noexcept { return x86::kPollCompare; }

}  // namespace patchcall::arch

// patchcall — the out-of-line slow path shared by every JIT safepoint poll.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::detail {

// Writes the stub into `out` (at most kSafepointStubMaxSize bytes) and returns its size.
// The stub preserves rax, rcx, rdx, rsi, rdi, r8-r11, rflags and xmm0-15 (everything the
// SysV ABI lets a callee clobber, except the upper halves of ymm/zmm registers), aligns the
// stack, and calls `slowPath`.
constexpr size_t kSafepointStubMaxSize = 320;
size_t encodeSafepointStub(uint8_t* out, void (*slowPath)() noexcept);

}  // namespace patchcall::detail

// patchcall x86-64 — the out-of-line slow path shared by every JIT safepoint poll.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::arch {

// How the stub saves the extended register state (x87, SSE, AVX, AVX-512, ... as XCR0 enables).
enum class StateSave : uint8_t {
  kAuto = 0,  // only as a request: the best the CPU has
  kXsavec,    // XSAVEC/XRSTOR, compacted form: init optimization only (no stale-area risk)
  kXsave,     // standard XSAVE/XRSTOR, for XSAVE CPUs without XSAVEC
  kFxsave,    // FXSAVE/FXRSTOR: x87, MXCSR, xmm0-15 (CPUs or OSes without XSAVE)
};

struct StateSaveLayout {
  StateSave method = StateSave::kFxsave;
  uint32_t areaSize = 512;  // bytes reserved on the stack, a multiple of 64
  uint64_t xcr0 = 0;        // state components XSAVE covers (0 with FXSAVE)
};

// Reads CPUID and XCR0: `wanted` when the CPU and OS support it, else the best they do.
// XSAVEOPT is never used: its modified optimization may skip a component that is unchanged
// since the last XRSTOR from the same address, but the stack area is reused by other frames.
StateSaveLayout detectStateSave(StateSave wanted = StateSave::kAuto) noexcept;

// Writes the stub into `out` (at most kSafepointStubMaxSize bytes) and returns its size.
// Entered by `call` from a poll's slow path, which has already stepped rsp below the red zone.
// The stub pushes rax, rcx, rdx, rsi, rdi, r8-r11 and rflags, clears DF, and calls `pending`
// (which must touch general registers only). Only when it returns true does the stub save the
// whole extended state in `save` (a 64-byte aligned area on the stack), call `slowPath` and
// restore it; callee-saved registers are kept by the C++ ABI either way. Stack use: 152
// bytes (return address, pushes, alignment) plus save.areaSize when `slowPath` runs.
constexpr size_t kSafepointStubMaxSize = 320;
size_t encodeSafepointStub(uint8_t* out, const StateSaveLayout& save, bool (*pending)() noexcept,
                           void (*slowPath)() noexcept);

}  // namespace patchcall::arch

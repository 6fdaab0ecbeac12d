// patchcall aarch64 — the out-of-line slow path shared by every JIT safepoint poll.
// Pure encoding (no aarch64-only code): tests/arch_aarch64/ decodes it on x86 hosts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::arch {

// How the stub saves the SIMD&FP state. One way on A64 (x86 has four): q0-q31 with stp/ldp,
// plus FPSR and FPCR. SVE/SME state beyond the low 128 bits is not saved: JIT code must not
// keep SVE values live across a poll (a NEON write zeroes the upper bits of a z register).
enum class StateSave : uint8_t {
  kAuto = 0,  // only as a request
  kFpSimd,    // q0-q31, FPSR, FPCR
};

struct StateSaveLayout {
  StateSave method = StateSave::kFpSimd;
  uint32_t areaSize = 512;  // q0-q31
  uint64_t xcr0 = 0;        // unused on A64 (kept so the engine's type is the same on both)
};

// Nothing to detect: every AArch64 Linux process has FP/SIMD.
inline StateSaveLayout detectStateSave(StateSave = StateSave::kAuto) noexcept { return {}; }

// Writes the stub into `out` (at most kSafepointStubMaxSize bytes) and returns its size.
// Entered by `bl` from a poll's slow path, which has saved x29/x30 (its own bl clobbers x30)
// and keeps sp 16-byte aligned. The stub saves x0-x18, x30 (in its frame record), NZCV, FPSR,
// FPCR and q0-q31, calls `pending` and, only when it returns true, `slowPath`, then restores
// all of it; x19-x28 and x29 are kept by AAPCS64 either way. Unlike x86 the SIMD registers are
// saved before `pending` (32 stp/ldp of q registers cost less than an XSAVE, and GCC may use
// v registers in any function). Stack use: 16 + kSafepointFrame bytes.
constexpr size_t kSafepointStubMaxSize = 384;  // 82 instructions today
inline constexpr uint32_t kSafepointFrame = 176 + 512;  // x0-x18, NZCV, FPSR, FPCR (22 slots), q0-q31
size_t encodeSafepointStub(uint8_t* out, const StateSaveLayout& save, bool (*pending)() noexcept,
                           void (*slowPath)() noexcept);

}  // namespace patchcall::arch

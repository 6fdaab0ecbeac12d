// patchcall x86-64 — what the CPU needs after a code write and while spinning.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::arch {

// x86 instruction fetch snoops stores (self- and cross-modifying code are coherent): nothing
// to do locally; other cores serialize through the cross-core sync.
inline void codeWritten(uintptr_t, size_t) noexcept {}
inline void cpuRelax() noexcept { __builtin_ia32_pause(); }

}  // namespace patchcall::arch

// patchcall aarch64 — what the CPU needs after a code write and while spinning.
// Compiled only for aarch64 (cache-maintenance builtins, hint instructions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::arch {

// A64 instruction fetch is not coherent with data stores: clean the D-cache to the point of
// unification and invalidate the I-cache for the range, then dsb ish; isb (libgcc's
// __aarch64_sync_cache_range reads CTR_EL0 and skips the dc when IDC is set, the ic when DIC
// is). The D-cache is physically tagged, so cleaning through the RX address also covers the
// write through the RW alias; the ic names the RX address, where the code is fetched. Other
// cores then need a context synchronization event: membarrier SYNC_CORE (the kernel's
// arch/arm64 membarrier.h asks JITs for exactly this order: flush first, then SYNC_CORE).
inline void codeWritten(uintptr_t rx, size_t n) noexcept {
  char* p = reinterpret_cast<char*>(rx);
  __builtin___clear_cache(p, p + n);
}
inline void cpuRelax() noexcept { __asm__ volatile("yield" ::: "memory"); }

}  // namespace patchcall::arch

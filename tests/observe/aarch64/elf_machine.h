// observe tests, aarch64 — what the ELF images (gdb JIT, jitdump) say about the machine, as an
// independent reader (elf.h, readelf) names it, and the CFA rules readelf -wF prints for
// frame_cfi.h's layout over a 0x40-byte range at 0x7f0000500000 (columns: CFA, x29, ra = x30).
#pragma once

#include <elf.h>

namespace observe_test {

inline constexpr unsigned kElfMachine = EM_AARCH64;
inline constexpr const char* kReadelfMachine = "AArch64";
inline constexpr const char* kReadelfCfiRows[] = {
    "00007f0000500000 sp+0     u     u",     // at entry: the return address is in x30
    "00007f0000500004 sp+16    c-16  c-8",   // after stp x29, x30, [sp, #-16]!
    "00007f0000500008 x29+16   c-16  c-8",   // after mov x29, sp: the body
    "00007f000050003c sp+0     u     u",     // at the ret, after ldp
};

}  // namespace observe_test

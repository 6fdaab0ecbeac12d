// observe tests, x86-64 — what the ELF images (gdb JIT, jitdump) say about the machine, as an
// independent reader (elf.h, readelf) names it, and the CFA rules readelf -wF prints for
// frame_cfi.h's layout over a 0x40-byte range at 0x7f0000500000 (columns: CFA, rbp, ra).
#pragma once

#include <elf.h>

namespace observe_test {

inline constexpr unsigned kElfMachine = EM_X86_64;
inline constexpr const char* kReadelfMachine = "Advanced Micro Devices X86-64";
inline constexpr const char* kReadelfCfiRows[] = {
    "00007f0000500000 rsp+8    u     c-8",   // at entry: the return address at CFA-8
    "00007f0000500001 rsp+16   c-16  c-8",   // after push rbp
    "00007f0000500004 rbp+16   c-16  c-8",   // after mov rbp, rsp: the body
    "00007f000050003f rsp+8    u     c-8",   // at the ret, after leave
};

}  // namespace observe_test

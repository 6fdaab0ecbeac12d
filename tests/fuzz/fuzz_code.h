// api_fuzz: the host instructions the harness writes (tests/fuzz/<isa>/fuzz_code.cpp, CMake
// picks the host's): returners, the caller blobs opEmitBlob emits and opRawBlob writes by hand
// (the same shape: keep an accumulator, after each site's call acc = acc * 31 + result, return
// acc), and the fixtures' code pages.
#pragma once

#include <cstdint>
#include <vector>

#include "patchcall/jit.h"

namespace patchcall::fuzz::code {

// Through jit::Assembler.
void emitReturner(jit::Assembler& a, uint32_t value);  // result = value ; ret
void emitCallerEnter(jit::Assembler& a);                // save what the body uses ; acc = 0
void emitAccumulate(jit::Assembler& a);                 // after a site's call: acc = acc * 31 + result
void emitCallerLeave(jit::Assembler& a);                // result = acc ; restore ; ret

// The same caller as bytes for installCode.
void rawEnter(std::vector<uint8_t>& code);
void rawNop(std::vector<uint8_t>& code);  // one nop
// Pads `code` (with nops) to where a site of `form` starts, then appends the site with its
// call(s) unlinked: x86 `E8 rel32` (Direct at 4k+3, Breakpoint anywhere) or the toggle's 14
// bytes (2-aligned); A64 `bl .` for Direct and Breakpoint (refused there), the never-installed
// toggle layout [nop][bl][b +8][bl] for Toggle. Returns the site's offset.
uint32_t rawSite(std::vector<uint8_t>& code, SiteForm form);
void rawAccumulate(std::vector<uint8_t>& code);
void rawLeave(std::vector<uint8_t>& code);
std::vector<uint8_t> retBytes();  // a lone `ret`

// Freed arena code is filled with a trap (x86 int3 CC; A64 udf #0, 00000000): true when `p`
// starts with one.
bool startsWithFill(const uint8_t* p);

// Fixtures (fuzz_fixtures.cpp). `result = value ; ret`:
std::vector<uint8_t> returnerBytes(uint32_t value);
// An `int fn()` calling `target` once: x86 `push rbx ; call ; pop rbx ; ret`, A64
// `stp x29, x30, [sp, #-16]! ; bl ; ldp x29, x30, [sp], #16 ; ret`, as if placed at `at`; the
// call at kForeignCallOffset (a BL out of reach is truncated like the hardware would: the
// runtime rewrites it before anything calls it).
extern const size_t kForeignCallOffset;
std::vector<uint8_t> foreignCaller(uintptr_t at, const void* target);
uint8_t fillByte();

}  // namespace patchcall::fuzz::code

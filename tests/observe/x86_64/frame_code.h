// observe tests, x86-64 — the hand-written frame-pointer code the tests install or call: the
// layout runtime/arch/x86_64/frame_cfi.h describes (push rbp; mov rbp, rsp ... leave; ret).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace observe_test {

// JitFrame (jit_frame.h): push rbp; mov rbp, rsp; mov rax, <callee>; call rax; leave; ret.
// Writes it at `out` and returns its size; edi (the int argument) reaches callee unchanged.
inline size_t emitJitFrame(uint8_t* out, uintptr_t callee) {
  uint8_t* p = out;
  *p++ = 0x55;                            // push rbp
  *p++ = 0x48, *p++ = 0x89, *p++ = 0xE5;  // mov rbp, rsp
  *p++ = 0x48, *p++ = 0xB8;               // mov rax, imm64
  std::memcpy(p, &callee, 8);
  p += 8;
  *p++ = 0xFF, *p++ = 0xD0;  // call rax
  *p++ = 0xC9;               // leave
  *p++ = 0xC3;               // ret
  return static_cast<size_t>(p - out);
}
inline constexpr size_t kEpilogueSize = 2;  // leave; ret
inline constexpr uint8_t kTrapFill = 0xCC;  // int3: what the rest of JitFrame's page holds

// The smallest blob with the layout and one Direct site (site_code.h):
//   push rbp; mov rbp, rsp; nop3; call rel32 (site at 7: rel32 at 8, aligned); leave; ret
inline constexpr uint32_t kSiteOffset = 7;
inline constexpr uint32_t kSiteReturnOffset = kSiteOffset + 5;  // the call's return address
inline constexpr uint32_t kEpilogueOffset = 12;                 // the leave
inline const std::vector<uint8_t> kSiteCode = {0x55, 0x48, 0x89, 0xE5, 0x0F, 0x1F, 0x00,
                                               0xE8, 0,    0,    0,    0,    0xC9, 0xC3};
// One no-op instruction: written over the prologue or the epilogue, it breaks the layout.
inline const std::vector<uint8_t> kNop = {0x90};

}  // namespace observe_test

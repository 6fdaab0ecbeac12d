// observe tests, aarch64 — the hand-written frame-record code the tests install or call: the
// layout runtime/arch/aarch64/frame_cfi.h describes (stp x29, x30, [sp, #-16]!; mov x29, sp
// ... ldp x29, x30, [sp], #16; ret).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace observe_test {

namespace a64 {
inline constexpr uint32_t kStp = 0xA9BF7BFD;    // stp x29, x30, [sp, #-16]!
inline constexpr uint32_t kMovFp = 0x910003FD;  // mov x29, sp
inline constexpr uint32_t kLdp = 0xA8C17BFD;    // ldp x29, x30, [sp], #16
inline constexpr uint32_t kRet = 0xD65F03C0;    // ret
inline constexpr uint32_t kBlr16 = 0xD63F0200;  // blr x16
inline constexpr uint32_t kMovzX16 = 0xD2800010, kMovkX16 = 0xF2800010;  // | hw << 21 | imm16 << 5
}  // namespace a64

// JitFrame (jit_frame.h): the frame record, x16 = <callee> (movz + 3 movk: no literal pool, so
// the trailing ldp; ret stay the range's last words), blr x16, ldp, ret. Writes it at `out` and
// returns its size; w0 (the int argument) reaches callee unchanged.
inline size_t emitJitFrame(uint8_t* out, uintptr_t callee) {
  uint32_t words[9] = {a64::kStp, a64::kMovFp};
  for (uint32_t hw = 0; hw < 4; ++hw) {
    const auto imm = static_cast<uint32_t>((callee >> (16 * hw)) & 0xFFFF);
    words[2 + hw] = (hw == 0 ? a64::kMovzX16 : a64::kMovkX16) | hw << 21 | imm << 5;
  }
  words[6] = a64::kBlr16, words[7] = a64::kLdp, words[8] = a64::kRet;
  std::memcpy(out, words, sizeof words);
  return sizeof words;
}
inline constexpr size_t kEpilogueSize = 8;  // ldp; ret
inline constexpr uint8_t kTrapFill = 0x00;  // udf #0: what the rest of JitFrame's page holds

// The smallest blob with the layout and one Direct site (site_code.h):
//   stp x29, x30, [sp, #-16]!; mov x29, sp; bl (site at 8); ldp x29, x30, [sp], #16; ret
inline constexpr uint32_t kSiteOffset = 8;
inline constexpr uint32_t kSiteReturnOffset = kSiteOffset + 4;  // the bl's return address
inline constexpr uint32_t kEpilogueOffset = 12;                 // the ldp
inline const std::vector<uint8_t> kSiteCode = {0xFD, 0x7B, 0xBF, 0xA9, 0xFD, 0x03, 0x00, 0x91, 0x00, 0x00,
                                               0x00, 0x94, 0xFD, 0x7B, 0xC1, 0xA8, 0xC0, 0x03, 0x5F, 0xD6};
// One no-op instruction: written over the prologue or the epilogue, it breaks the layout.
inline const std::vector<uint8_t> kNop = {0x1F, 0x20, 0x03, 0xD5};

}  // namespace observe_test

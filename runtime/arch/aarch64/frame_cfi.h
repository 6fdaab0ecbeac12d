// patchcall aarch64 — call frame information (.eh_frame) for a declared frame layout.
//
// The layout described is the AAPCS64 frame record, one per range:
//
//   start+0  A9BF7BFD    stp x29, x30, [sp, #-16]!   CFA = sp before it, return address in x30
//   start+4  910003FD    mov x29, sp                 CFA = sp+16 after the stp, x29 at CFA-16, x30 at CFA-8
//   start+8  ...body...                              CFA = x29+16 from here to the end of the range
//   end-8    A8C17BFD    ldp x29, x30, [sp], #16     (only with leaveRetAtEnd)
//   end-4    D65F03C0    ret                         CFA = sp, x29/x30 restored (only with leaveRetAtEnd)
//
// What it covers: every instruction of the range when the only epilogue is the trailing
// `ldp; ret` (the name leaveRetAtEnd is x86's, kept so both ISAs share the engine's type).
// Without it (or with other epilogues inside the body) the rule "CFA = x29+16" also claims the
// instructions after an epilogue's `ldp`: wrong exactly on those `ret`s, which an unwinder reaches only from an asynchronous sample or
// signal, never from a call made in the body (C++ exceptions, backtrace(), gdb's bt from a
// callee all start at a return address inside the body).
//
// Pointers are encoded DW_EH_PE_absptr (8 bytes): the bytes do not depend on where the
// .eh_frame itself lives, so one buffer serves __register_frame and the gdb ELF image.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "patchcall/status.h"

namespace patchcall::arch {

inline constexpr uint16_t kElfMachine = 183;  // EM_AARCH64

namespace a64 {
// DWARF register numbers (DWARF for the Arm 64-bit Architecture, AADWARF64: x0-x30 are 0-30, sp 31).
inline constexpr uint8_t kDwarfSp = 31;
inline constexpr uint8_t kDwarfFp = 29;
inline constexpr uint8_t kDwarfReturnAddress = 30;  // the "RA" column: x30
inline constexpr uint32_t kStpFrameRecord = 0xA9BF7BFD;  // stp x29, x30, [sp, #-16]!
inline constexpr uint32_t kMovFpSp = 0x910003FD;         // mov x29, sp
inline constexpr uint32_t kLdpFrameRecord = 0xA8C17BFD;  // ldp x29, x30, [sp], #16
inline constexpr uint32_t kRetX30 = 0xD65F03C0;          // ret
inline constexpr size_t kPrologueSize = 8;  // stp (4) + mov (4)
}  // namespace a64

// One range that follows the frame-pointer layout above.
struct FrameCfiRange {
  uintptr_t start = 0;  // address of the `push rbp`
  size_t size = 0;      // bytes, prologue and epilogue included
  bool leaveRetAtEnd = true;
};

// Whether `code` (the bytes of one range) has the prologue (and, if asked, the trailing
// `leave; ret`) the description above claims: a wrong description makes unwinders read
// garbage, so the engine checks before it registers anything.
Status checkFramePointerCode(std::span<const uint8_t> code, bool leaveRetAtEnd);

// A complete .eh_frame section: one CIE, one FDE per range, the zero terminator.
std::vector<uint8_t> buildFramePointerEhFrame(std::span<const FrameCfiRange> ranges);

}  // namespace patchcall::arch

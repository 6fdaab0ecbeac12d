// patchcall x86-64 — call frame information (.eh_frame) for a declared frame layout.
//
// The layout described is the standard frame-pointer frame, one per range:
//
//   start+0  55          push rbp        CFA = rsp+8  before it (return address at CFA-8)
//   start+1  48 89 E5    mov rbp, rsp    CFA = rsp+16 after the push, rbp saved at CFA-16
//   start+4  ...body...                  CFA = rbp+16 from here to the end of the range
//   end-2    C9          leave           (only with leaveRetAtEnd)
//   end-1    C3          ret             CFA = rsp+8, rbp restored (only with leaveRetAtEnd)
//
// What it covers: every instruction of the range when the only epilogue is the trailing
// `leave; ret`. Without leaveRetAtEnd (or with other epilogues inside the body) the rule
// "CFA = rbp+16" also claims the instructions after an epilogue's `leave`/`pop rbp`: wrong
// exactly on those `ret`s, which an unwinder reaches only from an asynchronous sample or
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

#include "opcodes.h"
#include "patchcall/status.h"

namespace patchcall::arch {

inline constexpr uint16_t kElfMachine = 62;  // EM_X86_64

namespace x86 {
// DWARF register numbers (System V x86-64 psABI, figure 3.36).
inline constexpr uint8_t kDwarfRsp = 7;
inline constexpr uint8_t kDwarfRbp = 6;
inline constexpr uint8_t kDwarfReturnAddress = 16;  // the "RA" column: rip
inline constexpr uint8_t kPushRbp = 0x55;
inline constexpr uint8_t kMovRbpRsp[2][3] = {{0x48, 0x89, 0xE5}, {0x48, 0x8B, 0xEC}};  // both encodings
inline constexpr uint8_t kLeave = 0xC9;  // kRet: opcodes.h
inline constexpr size_t kPrologueSize = 4;  // push rbp (1) + mov rbp, rsp (3)
}  // namespace x86

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

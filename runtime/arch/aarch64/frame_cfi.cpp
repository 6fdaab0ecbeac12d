// patchcall aarch64 — .eh_frame bytes for the frame-record layout (see frame_cfi.h).
#include "frame_cfi.h"

#include <cstring>
#include <string>

#include "../eh_frame_writer.h"

namespace patchcall::arch {
namespace {

uint32_t word(std::span<const uint8_t> code, size_t at) {
  uint32_t w;
  std::memcpy(&w, &code[at], 4);
  return w;
}

}  // namespace

Status checkFramePointerCode(std::span<const uint8_t> code, bool leaveRetAtEnd) {
  const size_t need = a64::kPrologueSize + (leaveRetAtEnd ? 8 : 0);
  if (code.size() < need) {
    return {Error::kInvalidArgument, "frame layout: range of " + std::to_string(code.size()) +
                                         " bytes is shorter than its prologue/epilogue (" +
                                         std::to_string(need) + ")"};
  }
  if (word(code, 0) != a64::kStpFrameRecord || word(code, 4) != a64::kMovFpSp) {
    return {Error::kInvalidArgument, "frame layout: range does not start with stp x29, x30, [sp, #-16]!; mov x29, sp"};
  }
  if (leaveRetAtEnd && (word(code, code.size() - 8) != a64::kLdpFrameRecord || word(code, code.size() - 4) != a64::kRetX30)) {
    return {Error::kInvalidArgument, "frame layout: range does not end with ldp x29, x30, [sp], #16; ret"};
  }
  return Status::ok();
}

std::vector<uint8_t> buildFramePointerEhFrame(std::span<const FrameCfiRange> ranges) {
  dwarf::EhFrameWriter w;
  // CIE: at entry (before the stp), CFA = sp and the return address is in x30 (no rule: same value).
  w.beginCie(a64::kDwarfReturnAddress);
  w.op({dwarf::kCfaDefCfa, a64::kDwarfSp, 0});
  w.finish(w.cie());

  for (const FrameCfiRange& r : ranges) {
    size_t fde = w.beginFde(r.start, r.size);
    w.advanceLoc(4);   // after stp x29, x30, [sp, #-16]!
    w.op({dwarf::kCfaDefCfaOffset, 16});
    w.op({static_cast<uint8_t>(dwarf::kCfaOffset | a64::kDwarfFp), 2});
    w.op({static_cast<uint8_t>(dwarf::kCfaOffset | a64::kDwarfReturnAddress), 1});
    w.advanceLoc(4);  // after mov x29, sp
    w.op({dwarf::kCfaDefCfaRegister, a64::kDwarfFp});
    if (r.leaveRetAtEnd && r.size >= a64::kPrologueSize + 8) {
      w.advanceLoc(r.size - 4 - a64::kPrologueSize);  // at the ret, after the ldp
      w.op({dwarf::kCfaDefCfa, a64::kDwarfSp, 0});
      w.op({static_cast<uint8_t>(dwarf::kCfaRestore | a64::kDwarfFp)});
      w.op({static_cast<uint8_t>(dwarf::kCfaRestore | a64::kDwarfReturnAddress)});
    }
    w.finish(fde);
  }
  return w.take();  // with the zero terminator
}

}  // namespace patchcall::arch

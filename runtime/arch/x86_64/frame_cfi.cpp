// patchcall x86-64 — .eh_frame bytes for the frame-pointer layout (see frame_cfi.h).
#include "frame_cfi.h"

#include <cstring>
#include <string>

#include "../eh_frame_writer.h"

namespace patchcall::arch {

Status checkFramePointerCode(std::span<const uint8_t> code, bool leaveRetAtEnd) {
  const size_t need = x86::kPrologueSize + (leaveRetAtEnd ? 2 : 0);
  if (code.size() < need) {
    return {Error::kInvalidArgument, "frame layout: range of " + std::to_string(code.size()) +
                                         " bytes is shorter than its prologue/epilogue (" +
                                         std::to_string(need) + ")"};
  }
  const bool mov = std::memcmp(&code[1], x86::kMovRbpRsp[0], 3) == 0 ||
                   std::memcmp(&code[1], x86::kMovRbpRsp[1], 3) == 0;
  if (code[0] != x86::kPushRbp || !mov) {
    return {Error::kInvalidArgument, "frame layout: range does not start with push rbp; mov rbp, rsp"};
  }
  if (leaveRetAtEnd && (code[code.size() - 2] != x86::kLeave || code[code.size() - 1] != x86::kRet)) {
    return {Error::kInvalidArgument, "frame layout: range does not end with leave; ret"};
  }
  return Status::ok();
}

std::vector<uint8_t> buildFramePointerEhFrame(std::span<const FrameCfiRange> ranges) {
  dwarf::EhFrameWriter w;
  // CIE: at entry (before the push), CFA = rsp+8 and the return address is at CFA-8.
  w.beginCie(x86::kDwarfReturnAddress);
  w.op({dwarf::kCfaDefCfa, x86::kDwarfRsp, 8});
  w.op({static_cast<uint8_t>(dwarf::kCfaOffset | x86::kDwarfReturnAddress), 1});
  w.finish(w.cie());

  for (const FrameCfiRange& r : ranges) {
    size_t fde = w.beginFde(r.start, r.size);
    w.advanceLoc(1);   // after push rbp
    w.op({dwarf::kCfaDefCfaOffset, 16});
    w.op({static_cast<uint8_t>(dwarf::kCfaOffset | x86::kDwarfRbp), 2});
    w.advanceLoc(3);  // after mov rbp, rsp
    w.op({dwarf::kCfaDefCfaRegister, x86::kDwarfRbp});
    if (r.leaveRetAtEnd && r.size >= x86::kPrologueSize + 2) {
      w.advanceLoc(r.size - 1 - x86::kPrologueSize);  // at the ret, after leave
      w.op({dwarf::kCfaDefCfa, x86::kDwarfRsp, 8});
      w.op({static_cast<uint8_t>(dwarf::kCfaRestore | x86::kDwarfRbp)});
    }
    w.finish(fde);
  }
  return w.take();  // with the zero terminator
}

}  // namespace patchcall::arch

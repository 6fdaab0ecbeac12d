// patchcall x86-64 — .eh_frame bytes for the frame-pointer layout (see frame_cfi.h).
#include "frame_cfi.h"

#include <cstring>
#include <initializer_list>
#include <string>


namespace patchcall::arch {
namespace {

// DWARF call frame instructions and pointer encodings (DWARF 4, section 6.4.2; LSB eh_frame).
constexpr uint8_t kCfaAdvanceLoc = 0x40;  // | delta (6 bits)
constexpr uint8_t kCfaOffset = 0x80;      // | register, then ULEB128 factored offset
constexpr uint8_t kCfaRestore = 0xC0;     // | register
constexpr uint8_t kCfaAdvanceLoc1 = 0x02;
constexpr uint8_t kCfaAdvanceLoc2 = 0x03;
constexpr uint8_t kCfaAdvanceLoc4 = 0x04;
constexpr uint8_t kCfaDefCfa = 0x0C;
constexpr uint8_t kCfaDefCfaRegister = 0x0D;
constexpr uint8_t kCfaDefCfaOffset = 0x0E;
constexpr uint8_t kPointerAbsolute = 0x00;  // DW_EH_PE_absptr
constexpr int kDataAlign = -8;              // offsets are factored by -8 (slots below the CFA)

void append(std::vector<uint8_t>& out, std::initializer_list<uint8_t> bytes) {
  out.insert(out.end(), bytes);
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  uint8_t b[8];
  std::memcpy(b, &v, 8);
  out.insert(out.end(), b, b + 8);
}
void patch32(std::vector<uint8_t>& out, size_t at, uint32_t v) { std::memcpy(out.data() + at, &v, 4); }

// Pads an entry with DW_CFA_nop to a multiple of the address size and fills in its length.
void finishEntry(std::vector<uint8_t>& out, size_t lengthAt) {
  while ((out.size() - lengthAt) % 8 != 0) out.push_back(0);
  patch32(out, lengthAt, static_cast<uint32_t>(out.size() - lengthAt - 4));
}

void advanceLoc(std::vector<uint8_t>& out, size_t delta) {
  if (delta < 64) {
    out.push_back(static_cast<uint8_t>(kCfaAdvanceLoc | delta));
  } else if (delta <= 0xFF) {
    out.push_back(kCfaAdvanceLoc1);
    out.push_back(static_cast<uint8_t>(delta));
  } else if (delta <= 0xFFFF) {
    out.push_back(kCfaAdvanceLoc2);
    out.push_back(static_cast<uint8_t>(delta));
    out.push_back(static_cast<uint8_t>(delta >> 8));
  } else {
    out.push_back(kCfaAdvanceLoc4);
    put32(out, static_cast<uint32_t>(delta));
  }
}

}  // namespace

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
  std::vector<uint8_t> out;
  // CIE: at entry (before the push), CFA = rsp+8 and the return address is at CFA-8.
  const size_t cie = out.size();
  put32(out, 0);  // length, filled in
  put32(out, 0);  // CIE id
  out.push_back(1);  // version
  append(out, {'z', 'R', 0});
  out.push_back(1);                                             // code alignment factor
  out.push_back(static_cast<uint8_t>(kDataAlign & 0x7F));       // SLEB128 -8
  out.push_back(x86::kDwarfReturnAddress);
  out.push_back(1);                 // augmentation data length
  out.push_back(kPointerAbsolute);  // 'R': FDE pointer encoding
  append(out, {kCfaDefCfa, x86::kDwarfRsp, 8});
  append(out, {static_cast<uint8_t>(kCfaOffset | x86::kDwarfReturnAddress), 1});
  finishEntry(out, cie);

  for (const FrameCfiRange& r : ranges) {
    const size_t fde = out.size();
    put32(out, 0);
    put32(out, static_cast<uint32_t>(out.size() - cie));  // CIE pointer: back to the CIE
    put64(out, r.start);
    put64(out, r.size);
    out.push_back(0);  // augmentation data length
    advanceLoc(out, 1);   // after push rbp
    append(out, {kCfaDefCfaOffset, 16});
    append(out, {static_cast<uint8_t>(kCfaOffset | x86::kDwarfRbp), 2});
    advanceLoc(out, 3);  // after mov rbp, rsp
    append(out, {kCfaDefCfaRegister, x86::kDwarfRbp});
    if (r.leaveRetAtEnd && r.size >= x86::kPrologueSize + 2) {
      advanceLoc(out, r.size - 1 - x86::kPrologueSize);  // at the ret, after leave
      append(out, {kCfaDefCfa, x86::kDwarfRsp, 8});
      out.push_back(static_cast<uint8_t>(kCfaRestore | x86::kDwarfRbp));
    }
    finishEntry(out, fde);
  }
  put32(out, 0);  // terminator: libgcc's __register_frame walks until a zero length
  return out;
}

}  // namespace patchcall::arch

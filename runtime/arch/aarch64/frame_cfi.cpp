// patchcall aarch64 — .eh_frame bytes for the frame-record layout (see frame_cfi.h).
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
  std::vector<uint8_t> out;
  // CIE: at entry (before the stp), CFA = sp and the return address is in x30 (no rule: same value).
  const size_t cie = out.size();
  put32(out, 0);  // length, filled in
  put32(out, 0);  // CIE id
  out.push_back(1);  // version
  append(out, {'z', 'R', 0});
  out.push_back(1);                                             // code alignment factor
  out.push_back(static_cast<uint8_t>(kDataAlign & 0x7F));       // SLEB128 -8
  out.push_back(a64::kDwarfReturnAddress);
  out.push_back(1);                 // augmentation data length
  out.push_back(kPointerAbsolute);  // 'R': FDE pointer encoding
  append(out, {kCfaDefCfa, a64::kDwarfSp, 0});
  finishEntry(out, cie);

  for (const FrameCfiRange& r : ranges) {
    const size_t fde = out.size();
    put32(out, 0);
    put32(out, static_cast<uint32_t>(out.size() - cie));  // CIE pointer: back to the CIE
    put64(out, r.start);
    put64(out, r.size);
    out.push_back(0);  // augmentation data length
    advanceLoc(out, 4);   // after stp x29, x30, [sp, #-16]!
    append(out, {kCfaDefCfaOffset, 16});
    append(out, {static_cast<uint8_t>(kCfaOffset | a64::kDwarfFp), 2});
    append(out, {static_cast<uint8_t>(kCfaOffset | a64::kDwarfReturnAddress), 1});
    advanceLoc(out, 4);  // after mov x29, sp
    append(out, {kCfaDefCfaRegister, a64::kDwarfFp});
    if (r.leaveRetAtEnd && r.size >= a64::kPrologueSize + 8) {
      advanceLoc(out, r.size - 4 - a64::kPrologueSize);  // at the ret, after the ldp
      append(out, {kCfaDefCfa, a64::kDwarfSp, 0});
      out.push_back(static_cast<uint8_t>(kCfaRestore | a64::kDwarfFp));
      out.push_back(static_cast<uint8_t>(kCfaRestore | a64::kDwarfReturnAddress));
    }
    finishEntry(out, fde);
  }
  put32(out, 0);  // terminator: libgcc's __register_frame walks until a zero length
  return out;
}

}  // namespace patchcall::arch

// patchcall — writing .eh_frame bytes (DWARF 4 call frame information, section 6.4, in the
// LSB's .eh_frame form): one CIE, FDEs pointing back at it, a zero terminator. ISA-neutral;
// each ISA's frame_cfi.cpp says which registers and which rules its frame layout has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace patchcall::arch::dwarf {

// Call frame instructions.
constexpr uint8_t kCfaAdvanceLoc = 0x40;  // | delta (6 bits)
constexpr uint8_t kCfaOffset = 0x80;      // | register, then ULEB128 factored offset
constexpr uint8_t kCfaRestore = 0xC0;     // | register
constexpr uint8_t kCfaAdvanceLoc1 = 0x02;
constexpr uint8_t kCfaAdvanceLoc2 = 0x03;
constexpr uint8_t kCfaAdvanceLoc4 = 0x04;
constexpr uint8_t kCfaDefCfa = 0x0C;
constexpr uint8_t kCfaDefCfaRegister = 0x0D;
constexpr uint8_t kCfaDefCfaOffset = 0x0E;
constexpr uint8_t kPointerAbsolute = 0x00;  // DW_EH_PE_absptr: FDE addresses are absolute
constexpr int kDataAlign = -8;              // offsets are factored by -8 (slots below the CFA)

class EhFrameWriter {
 public:
  // The CIE ('zR': absolute FDE pointers, code alignment 1, data alignment -8); the caller
  // then adds its initial rules with op() and calls finish(cie()).
  void beginCie(uint8_t returnAddressRegister) {
    cie_ = out_.size();
    put32(0);  // length, filled in by finish
    put32(0);  // CIE id
    out_.push_back(1);  // version
    op({'z', 'R', 0});
    out_.push_back(1);                                        // code alignment factor
    out_.push_back(static_cast<uint8_t>(kDataAlign & 0x7F));  // SLEB128 -8
    out_.push_back(returnAddressRegister);
    out_.push_back(1);                 // augmentation data length
    out_.push_back(kPointerAbsolute);  // 'R'
  }
  size_t cie() const noexcept { return cie_; }
  // An FDE for [start, start + size); returns its offset for finish().
  size_t beginFde(uint64_t start, uint64_t size) {
    size_t fde = out_.size();
    put32(0);
    put32(static_cast<uint32_t>(out_.size() - cie_));  // CIE pointer: back to the CIE
    put64(start);
    put64(size);
    out_.push_back(0);  // augmentation data length
    return fde;
  }
  void op(std::initializer_list<uint8_t> bytes) { out_.insert(out_.end(), bytes); }
  void advanceLoc(size_t delta) {
    if (delta < 64) {
      out_.push_back(static_cast<uint8_t>(kCfaAdvanceLoc | delta));
    } else if (delta <= 0xFF) {
      op({kCfaAdvanceLoc1, static_cast<uint8_t>(delta)});
    } else if (delta <= 0xFFFF) {
      op({kCfaAdvanceLoc2, static_cast<uint8_t>(delta), static_cast<uint8_t>(delta >> 8)});
    } else {
      out_.push_back(kCfaAdvanceLoc4);
      put32(static_cast<uint32_t>(delta));
    }
  }
  // Pads the entry with DW_CFA_nop to a multiple of the address size and fills in its length.
  void finish(size_t entry) {
    while ((out_.size() - entry) % 8 != 0) out_.push_back(0);
    auto length = static_cast<uint32_t>(out_.size() - entry - 4);
    std::memcpy(out_.data() + entry, &length, 4);
  }
  // The zero terminator libgcc's __register_frame walks to; the bytes.
  std::vector<uint8_t> take() {
    put32(0);
    return std::move(out_);
  }

 private:
  void put32(uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    out_.insert(out_.end(), b, b + 4);
  }
  void put64(uint64_t v) {
    uint8_t b[8];
    std::memcpy(b, &v, 8);
    out_.insert(out_.end(), b, b + 8);
  }

  std::vector<uint8_t> out_;
  size_t cie_ = 0;
};

}  // namespace patchcall::arch::dwarf

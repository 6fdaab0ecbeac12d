// patchcall — the DWARF pointer encodings (DW_EH_PE_*) of .eh_frame_hdr, CIEs and FDEs, read
// just far enough to bound one function.
#include "function_bounds.h"

#include <cstring>

namespace patchcall::detail::aot {
namespace {

constexpr uint8_t kOmit = 0xFF;
constexpr uint8_t kPcRel = 0x10;
constexpr uint8_t kDataRel = 0x30;

template <typename T>
T load(const uint8_t* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t uleb(const uint8_t*& p) noexcept {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) break;
  }
  return v;
}

int64_t sleb(const uint8_t*& p) noexcept {
  int64_t v = 0;
  int shift = 0;
  uint8_t b;
  do {
    b = *p++;
    v |= static_cast<int64_t>(b & 0x7F) << shift;
    shift += 7;
  } while ((b & 0x80) != 0 && shift < 64);
  if (shift < 64 && (b & 0x40) != 0) v |= -(int64_t{1} << shift);
  return v;
}

// One encoded value at p (advanced past it). `dataBase`: what DW_EH_PE_datarel counts from.
bool readEncoded(const uint8_t*& p, uint8_t enc, uintptr_t dataBase, uintptr_t* out) noexcept {
  if (enc == kOmit) return false;
  const uint8_t* at = p;
  uint64_t v;
  switch (enc & 0x0F) {
    case 0x00: v = load<uint64_t>(p); p += 8; break;  // absptr (64-bit)
    case 0x01: v = uleb(p); break;
    case 0x02: v = load<uint16_t>(p); p += 2; break;
    case 0x03: v = load<uint32_t>(p); p += 4; break;
    case 0x04: v = load<uint64_t>(p); p += 8; break;
    case 0x09: v = static_cast<uint64_t>(sleb(p)); break;
    case 0x0A: v = static_cast<uint64_t>(static_cast<int64_t>(load<int16_t>(p))); p += 2; break;
    case 0x0B: v = static_cast<uint64_t>(static_cast<int64_t>(load<int32_t>(p))); p += 4; break;
    case 0x0C: v = load<uint64_t>(p); p += 8; break;
    default: return false;
  }
  switch (enc & 0x70) {
    case 0x00: break;
    case kPcRel: v += reinterpret_cast<uintptr_t>(at); break;
    case kDataRel: v += dataBase; break;
    default: return false;  // textrel, funcrel, aligned: not produced for x86-64 user code
  }
  if ((enc & 0x80) != 0) return false;  // indirect
  *out = static_cast<uintptr_t>(v);
  return true;
}

// The FDE pointer encoding a CIE declares (its 'R' augmentation); absptr without one.
bool fdeEncoding(const uint8_t* cie, uint8_t* enc) noexcept {
  const uint8_t* p = cie;
  uint64_t length = load<uint32_t>(p);
  p += 4;
  if (length == 0xFFFFFFFFu) p += 8;
  if (load<uint32_t>(p) != 0) return false;  // not a CIE
  p += 4;
  uint8_t version = *p++;
  const char* aug = reinterpret_cast<const char*>(p);
  p += std::strlen(aug) + 1;
  if (std::strstr(aug, "eh") != nullptr) return false;
  uleb(p);   // code alignment
  sleb(p);   // data alignment
  if (version == 1) {
    ++p;
  } else {
    uleb(p);  // return address register
  }
  *enc = 0x00;
  if (aug[0] != 'z') return aug[0] == '\0';
  uleb(p);  // augmentation data length
  for (const char* a = aug + 1; *a != '\0'; ++a) {
    switch (*a) {
      case 'R': *enc = *p++; break;
      case 'L': ++p; break;
      case 'P': {
        uint8_t penc = *p++;
        uintptr_t ignored;
        if (!readEncoded(p, penc & 0x7F, 0, &ignored)) return false;
        break;
      }
      case 'S': case 'B': break;
      default: return false;
    }
  }
  return true;
}

}  // namespace

bool functionBounds(uintptr_t ehFrameHdr, uintptr_t pc, FunctionBounds* out) noexcept {
  const auto* hdr = reinterpret_cast<const uint8_t*>(ehFrameHdr);
  if (hdr == nullptr || hdr[0] != 1) return false;
  uint8_t frameEnc = hdr[1], countEnc = hdr[2], tableEnc = hdr[3];
  const uint8_t* p = hdr + 4;
  uintptr_t ignored, count;
  if (!readEncoded(p, frameEnc, ehFrameHdr, &ignored) || !readEncoded(p, countEnc, ehFrameHdr, &count)) return false;
  // The table the linker writes: pairs of datarel sdata4 (initial location, FDE), sorted.
  if (tableEnc != (kDataRel | 0x0B) || count == 0) return false;
  const auto* table = reinterpret_cast<const int32_t*>(p);
  auto location = [&](size_t i) { return ehFrameHdr + static_cast<intptr_t>(table[2 * i]); };
  if (pc < location(0)) return false;
  size_t lo = 0, hi = count;  // the last entry with location <= pc
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    (location(mid) <= pc ? lo : hi) = mid;
  }
  const uint8_t* fde = reinterpret_cast<const uint8_t*>(ehFrameHdr + static_cast<intptr_t>(table[2 * lo + 1]));
  const uint8_t* q = fde;
  uint32_t length = load<uint32_t>(q);
  q += 4;
  if (length == 0xFFFFFFFFu) q += 8;
  uint32_t ciePointer = load<uint32_t>(q);
  const uint8_t* cie = q - ciePointer;
  q += 4;
  uint8_t enc;
  if (!fdeEncoding(cie, &enc)) return false;
  uintptr_t begin, range;
  if (!readEncoded(q, enc, 0, &begin) || !readEncoded(q, enc & 0x0F, 0, &range)) return false;
  if (pc < begin || pc >= begin + range) return false;
  out->begin = begin;
  out->end = begin + range;
  return true;
}

}  // namespace patchcall::detail::aot

// tests/fuzz/fuzz_code.h on aarch64 (AAPCS64): a caller keeps a 32-byte frame, the frame record
// (its BLs overwrite x30) and x19, the accumulator (callee-saved); the result is w0, x9 a scratch
// between calls. The raw words below are the instructions emitCaller* emits.
#include "fuzz_code.h"

#include <cstring>

namespace patchcall::fuzz::code {

namespace a64 = asmjit::a64;

namespace {
constexpr uint32_t kStpFrame32 = 0xA9BE7BFD;  // stp x29, x30, [sp, #-32]!
constexpr uint32_t kMovFp = 0x910003FD;       // mov x29, sp
constexpr uint32_t kStrX19 = 0xF9000BF3;      // str x19, [sp, #16]
constexpr uint32_t kZeroW19 = 0x52800013;     // movz w19, #0
constexpr uint32_t kMovz31W9 = 0x528003E9;    // movz w9, #31
constexpr uint32_t kMaddW19 = 0x1B090273;     // madd w19, w19, w9, w0
constexpr uint32_t kMovW0W19 = 0x2A1303E0;    // mov w0, w19
constexpr uint32_t kLdrX19 = 0xF9400BF3;      // ldr x19, [sp, #16]
constexpr uint32_t kLdpFrame32 = 0xA8C27BFD;  // ldp x29, x30, [sp], #32
constexpr uint32_t kStpFrame16 = 0xA9BF7BFD;  // stp x29, x30, [sp, #-16]!
constexpr uint32_t kLdpFrame16 = 0xA8C17BFD;  // ldp x29, x30, [sp], #16
constexpr uint32_t kRet = 0xD65F03C0;
constexpr uint32_t kNop = 0xD503201F;
constexpr uint32_t kBl = 0x94000000, kImm26 = 0x03FFFFFF;  // kBl alone: `bl .`, linked at install
constexpr uint32_t kSkip2 = 0x14000002;                    // b +8
constexpr uint32_t kMovzW0 = 0x52800000, kMovkW0Lsl16 = 0x72A00000;

void put(std::vector<uint8_t>& b, uint32_t w) {
  uint8_t x[4];
  std::memcpy(x, &w, 4);
  b.insert(b.end(), x, x + 4);
}
}  // namespace

void emitReturner(jit::Assembler& a, uint32_t value) {
  a.movz(a64::w0, value & 0xFFFF);
  a.movk(a64::w0, value >> 16, asmjit::arm::lsl(16));
  a.ret(a64::x30);
}
void emitCallerEnter(jit::Assembler& a) {
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -32));
  a.mov(a64::x29, a64::sp);
  a.str(a64::x19, a64::ptr(a64::sp, 16));
  a.movz(a64::w19, 0);
}
void emitAccumulate(jit::Assembler& a) {
  a.movz(a64::w9, 31);
  a.madd(a64::w19, a64::w19, a64::w9, a64::w0);
}
void emitCallerLeave(jit::Assembler& a) {
  a.mov(a64::w0, a64::w19);
  a.ldr(a64::x19, a64::ptr(a64::sp, 16));
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 32));
  a.ret(a64::x30);
}

void rawEnter(std::vector<uint8_t>& code) {
  for (uint32_t w : {kStpFrame32, kMovFp, kStrX19, kZeroW19}) put(code, w);
}
void rawNop(std::vector<uint8_t>& code) { put(code, kNop); }
uint32_t rawSite(std::vector<uint8_t>& code, SiteForm form) {
  auto at = static_cast<uint32_t>(code.size());  // every word is aligned: no padding
  if (form == SiteForm::kToggle) {
    for (uint32_t w : {kNop, kBl, kSkip2, kBl}) put(code, w);  // runtime/arch/aarch64/site_layout.h (refused)
  } else {
    put(code, kBl);
  }
  return at;
}
void rawAccumulate(std::vector<uint8_t>& code) {
  put(code, kMovz31W9);
  put(code, kMaddW19);
}
void rawLeave(std::vector<uint8_t>& code) {
  for (uint32_t w : {kMovW0W19, kLdrX19, kLdpFrame32, kRet}) put(code, w);
}
std::vector<uint8_t> retBytes() {
  std::vector<uint8_t> b;
  put(b, kRet);
  return b;
}

bool startsWithFill(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w == 0;  // udf #0
}

std::vector<uint8_t> returnerBytes(uint32_t value) {
  std::vector<uint8_t> b;
  put(b, kMovzW0 | (value & 0xFFFF) << 5);
  put(b, kMovkW0Lsl16 | (value >> 16) << 5);
  put(b, kRet);
  return b;
}

const size_t kForeignCallOffset = 4;
std::vector<uint8_t> foreignCaller(uintptr_t at, const void* target) {
  int64_t words = (reinterpret_cast<intptr_t>(target) - static_cast<intptr_t>(at + kForeignCallOffset)) / 4;
  std::vector<uint8_t> b;
  for (uint32_t w : {kStpFrame16, kBl | (static_cast<uint32_t>(words) & kImm26), kLdpFrame16, kRet}) put(b, w);
  return b;
}
uint8_t fillByte() { return 0x00; }

}  // namespace patchcall::fuzz::code

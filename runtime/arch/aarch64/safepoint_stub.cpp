// patchcall aarch64 — hand-encoded safepoint stub (runtime/ does not depend on asmjit).
#include "safepoint_stub.h"

#include <cstring>

#include "opcodes.h"

namespace patchcall::arch {
namespace {

using namespace a64;

// The frame below the frame record (x29, x30 at the stub's entry sp - 16):
//   [sp + 0 .. 152)   x0-x18 (x18 is a temporary on Linux; x16/x17 the IP registers)
//   [sp + 152]        NZCV, [sp + 160] FPSR, [sp + 168] FPCR
//   [sp + 176 .. 688) q0-q31
constexpr uint32_t kGprSlots = 19;
constexpr uint32_t kNzcvAt = 8 * kGprSlots, kFpsrAt = kNzcvAt + 8, kFpcrAt = kFpsrAt + 8;
constexpr uint32_t kSimdAt = kFpcrAt + 8;
static_assert(kSimdAt == 176 && kSimdAt + 512 == kSafepointFrame && kSafepointFrame % 16 == 0);

// System registers as mrs/msr encode them (op0=3, op1=3, CRn=4).
constexpr uint32_t kSysNzcv = 0x1B4200, kSysFpcr = 0x1B4400, kSysFpsr = 0x1B4420;

struct Out {
  uint8_t* p;
  size_t n = 0;
  void insn(uint32_t i) { std::memcpy(p + n, &i, 4), n += 4; }

  // stp/ldp xt1, xt2, [sp, #off] (signed offset, off a multiple of 8, < 512)
  void stpX(uint32_t t1, uint32_t t2, uint32_t off) { insn(0xA9000000 | (off / 8) << 15 | t2 << 10 | kSp << 5 | t1); }
  void ldpX(uint32_t t1, uint32_t t2, uint32_t off) { insn(0xA9400000 | (off / 8) << 15 | t2 << 10 | kSp << 5 | t1); }
  // str/ldr xt, [sp, #off] (unsigned offset, a multiple of 8)
  void strX(uint32_t t, uint32_t off) { insn(0xF9000000 | (off / 8) << 10 | kSp << 5 | t); }
  void ldrX(uint32_t t, uint32_t off) { insn(0xF9400000 | (off / 8) << 10 | kSp << 5 | t); }
  // stp/ldp qt1, qt2, [sp, #off] (signed offset, a multiple of 16, < 1024)
  void stpQ(uint32_t t1, uint32_t t2, uint32_t off) { insn(0xAD000000 | (off / 16) << 15 | t2 << 10 | kSp << 5 | t1); }
  void ldpQ(uint32_t t1, uint32_t t2, uint32_t off) { insn(0xAD400000 | (off / 16) << 15 | t2 << 10 | kSp << 5 | t1); }
  void mrs(uint32_t t, uint32_t sys) { insn(0xD5200000 | sys << 0 | t); }  // mrs xt, <sys>
  void msr(uint32_t sys, uint32_t t) { insn(0xD5000000 | sys << 0 | t); }  // msr <sys>, xt
  void stpFrameRecordPre() { insn(0xA9BF7BFD); }   // stp x29, x30, [sp, #-16]!
  void ldpFrameRecordPost() { insn(0xA8C17BFD); }  // ldp x29, x30, [sp], #16
  void movFpSp() { insn(0x910003FD); }             // mov x29, sp
  void movSpFp() { insn(0x910003BF); }             // mov sp, x29
  void subSp(uint32_t imm) { insn(0xD1000000 | imm << 10 | kSp << 5 | kSp); }  // sub sp, sp, #imm (< 4096)
  void uxtbW0() { insn(0x53001C00); }                                           // uxtb w0, w0
  void blr(uint32_t r) { insn(kBlr | r << 5); }
  void ret() { insn(kRet); }
  // movz/movk xd, the 64-bit `v` in four 16-bit pieces
  void movImm64(uint32_t d, uint64_t v) {
    insn(0xD2800000 | static_cast<uint32_t>(v & 0xFFFF) << 5 | d);
    for (uint32_t hw = 1; hw < 4; ++hw) insn(0xF2800000 | hw << 21 | static_cast<uint32_t>((v >> (16 * hw)) & 0xFFFF) << 5 | d);
  }
  // cbz w0, <bound later>; returns the instruction's offset (see bindCbz)
  size_t cbzW0() {
    insn(kCbzW | kX0);
    return n - 4;
  }
  void bindCbz(size_t at) {
    uint32_t i;
    std::memcpy(&i, p + at, 4);
    i |= static_cast<uint32_t>((n - at) / 4) << 5;
    std::memcpy(p + at, &i, 4);
  }
};

}  // namespace

size_t encodeSafepointStub(uint8_t* out, const StateSaveLayout&, bool (*pending)() noexcept, void (*slowPath)() noexcept) {
  Out o{out};
  o.stpFrameRecordPre();
  o.movFpSp();
  o.subSp(kSafepointFrame);
  for (uint32_t r = 0; r + 1 < kGprSlots; r += 2) o.stpX(r, r + 1, 8 * r);
  o.strX(kX18, 8 * kX18);
  o.mrs(kX0, kSysNzcv);
  o.mrs(1, kSysFpsr);
  o.mrs(2, kSysFpcr);
  o.strX(kX0, kNzcvAt);
  o.strX(1, kFpsrAt);
  o.strX(2, kFpcrAt);
  for (uint32_t q = 0; q < 32; q += 2) o.stpQ(q, q + 1, kSimdAt + 16 * q);
  o.movImm64(kX16, reinterpret_cast<uint64_t>(pending));
  o.blr(kX16);
  o.uxtbW0();  // AAPCS64 leaves a bool's bits above bit 0..7 unspecified
  size_t skip = o.cbzW0();
  o.movImm64(kX16, reinterpret_cast<uint64_t>(slowPath));
  o.blr(kX16);
  o.bindCbz(skip);
  for (uint32_t q = 0; q < 32; q += 2) o.ldpQ(q, q + 1, kSimdAt + 16 * q);
  o.ldrX(kX0, kNzcvAt);
  o.ldrX(1, kFpsrAt);
  o.ldrX(2, kFpcrAt);
  o.msr(kSysNzcv, kX0);
  o.msr(kSysFpsr, 1);
  o.msr(kSysFpcr, 2);
  for (uint32_t r = 0; r + 1 < kGprSlots; r += 2) o.ldpX(r, r + 1, 8 * r);
  o.ldrX(kX18, 8 * kX18);
  o.movSpFp();
  o.ldpFrameRecordPost();
  o.ret();
  return o.n;
}

}  // namespace patchcall::arch

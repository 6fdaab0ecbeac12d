// patchcall x86-64 — hand-encoded safepoint stub (runtime/ does not depend on asmjit).
#include "safepoint_stub.h"

#include <cpuid.h>

#include <cstring>
#include <initializer_list>

namespace patchcall::arch {
namespace {

enum Reg : uint8_t { rax = 0, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11 };

// Caller-saved general registers, in push order (popped in reverse).
constexpr Reg kSaved[] = {rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11};
// Below the stub's rbp: rflags, then kSaved.
constexpr int8_t kPushedBelowRbp = static_cast<int8_t>(8 * (1 + sizeof kSaved / sizeof kSaved[0]));

constexpr uint32_t kXsaveHeader = 512;      // XSAVE header: bytes 512..575 of the area
constexpr uint32_t kXsaveHeaderSize = 64;

constexpr uint8_t kRexW = 0x48;
constexpr uint8_t kRexB = 0x41;
constexpr uint8_t kModRmRspSib = 0x04;  // ModRM rm=100: a SIB byte follows
constexpr uint8_t kSibRspBase = 0x24;   // SIB: base rsp, no index

struct Out {
  uint8_t* p;
  size_t n = 0;
  void bytes(std::initializer_list<uint8_t> b) {
    for (uint8_t x : b) p[n++] = x;
  }
  void u32(uint32_t v) { std::memcpy(p + n, &v, 4), n += 4; }
  void u64(uint64_t v) { std::memcpy(p + n, &v, 8), n += 8; }

  // push r64: [41] 50+r
  void push(Reg r) {
    if (r >= r8) bytes({kRexB});
    bytes({static_cast<uint8_t>(0x50 + (r & 7))});
  }
  // pop r64: [41] 58+r
  void pop(Reg r) {
    if (r >= r8) bytes({kRexB});
    bytes({static_cast<uint8_t>(0x58 + (r & 7))});
  }
  void pushfq() { bytes({0x9C}); }                      // pushfq
  void popfq() { bytes({0x9D}); }                       // popfq
  void cld() { bytes({0xFC}); }                         // cld
  void ret() { bytes({0xC3}); }                         // ret
  void movRbpRsp() { bytes({kRexW, 0x89, 0xE5}); }      // mov rbp, rsp
  void xorEaxEax() { bytes({0x31, 0xC0}); }             // xor eax, eax (zeroes rax)
  void callRax() { bytes({0xFF, 0xD0}); }               // call rax
  // and rsp, imm8 (sign-extended): 48 83 /4 ib
  void andRspImm8(int8_t imm) { bytes({kRexW, 0x83, 0xE4, static_cast<uint8_t>(imm)}); }
  // sub rsp, imm32: 48 81 /5 id
  void subRspImm32(uint32_t imm) { bytes({kRexW, 0x81, 0xEC}), u32(imm); }
  // lea rsp, [rbp+disp8]: 48 8D 65 db
  void leaRspRbpDisp8(int8_t disp) { bytes({kRexW, 0x8D, 0x65, static_cast<uint8_t>(disp)}); }
  // mov [rsp+disp32], rax: 48 89 84 24 id
  void movRspDisp32Rax(uint32_t disp) { bytes({kRexW, 0x89, 0x84, kSibRspBase}), u32(disp); }
  // mov r32, imm32: B8+r id (r < 8; zero-extends into the 64-bit register)
  void movR32Imm32(Reg r, uint32_t imm) { bytes({static_cast<uint8_t>(0xB8 + r)}), u32(imm); }
  // mov rax, imm64: 48 B8 iq
  void movRaxImm64(uint64_t imm) { bytes({kRexW, 0xB8}), u64(imm); }
  void testAlAl() { bytes({0x84, 0xC0}); }  // test al, al
  // jz rel32: 0F 84 cd; returns where the rel32 goes (see bindRel32)
  size_t jzRel32() {
    bytes({0x0F, 0x84}), u32(0);
    return n - 4;
  }
  // Points the rel32 at `field` (relative to the end of its field) to the current offset.
  void bindRel32(size_t field) {
    auto rel = static_cast<uint32_t>(n - (field + 4));
    std::memcpy(p + field, &rel, 4);
  }

  // REX.W 0F <op> /ext with the memory operand [rsp]: the state save/restore family.
  void stateOpAtRsp(uint8_t op, uint8_t ext) {
    bytes({kRexW, 0x0F, op, static_cast<uint8_t>(kModRmRspSib | (ext << 3)), kSibRspBase});
  }
  void fxsave64Rsp() { stateOpAtRsp(0xAE, 0); }   // fxsave64 [rsp]:  48 0F AE 04 24
  void fxrstor64Rsp() { stateOpAtRsp(0xAE, 1); }  // fxrstor64 [rsp]: 48 0F AE 0C 24
  void xsave64Rsp() { stateOpAtRsp(0xAE, 4); }    // xsave64 [rsp]:   48 0F AE 24 24
  void xrstor64Rsp() { stateOpAtRsp(0xAE, 5); }   // xrstor64 [rsp]:  48 0F AE 2C 24
  void xsavec64Rsp() { stateOpAtRsp(0xC7, 4); }   // xsavec64 [rsp]:  48 0F C7 24 24

  // edx:eax = all ones: the instruction mask, so RFBM = XCR0 (every enabled component).
  void allComponentsMask() {
    movR32Imm32(rax, 0xFFFFFFFFu);
    movR32Imm32(rdx, 0xFFFFFFFFu);
  }
};

uint64_t readXcr0() noexcept {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

}  // namespace

StateSaveLayout detectStateSave(StateSave wanted) noexcept {
  StateSaveLayout fx;  // FXSAVE: every x86-64 CPU has it (512 bytes, 16-byte aligned)
  unsigned eax, ebx, ecx, edx;
  // OSXSAVE: the CPU has XSAVE and the OS enabled it (else xgetbv/xsave fault with #UD).
  if (wanted == StateSave::kFxsave || !__get_cpuid(1, &eax, &ebx, &ecx, &edx) || (ecx & bit_OSXSAVE) == 0) return fx;
  if (!__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx)) return fx;
  // EBX: the standard-format size of everything XCR0 enables now (an upper bound for the
  // compacted format). Less than legacy region + header would be a broken CPUID: stay safe.
  uint32_t standard = ebx;
  if (standard < kXsaveHeader + kXsaveHeaderSize || standard > (1u << 20)) return fx;
  StateSaveLayout x;
  x.areaSize = (standard + 63) & ~63u;
  x.xcr0 = readXcr0();
  bool hasXsavec = __get_cpuid_count(0xD, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 1)) != 0;
  x.method = hasXsavec && wanted != StateSave::kXsave ? StateSave::kXsavec : StateSave::kXsave;
  return x;
}

size_t encodeSafepointStub(uint8_t* out, const StateSaveLayout& save, bool (*pending)() noexcept,
                           void (*slowPath)() noexcept) {
  Out o{out};
  o.push(rbp);
  o.movRbpRsp();
  o.pushfq();
  for (Reg r : kSaved) o.push(r);
  o.cld();  // the C++ ABI wants DF clear; popfq gives the JIT code its own DF back
  // Most slow paths find nothing to do (a thread that already acknowledged keeps polling
  // until the grace period ends): ask first, in general-registers-only code, and skip the
  // extended-state save (~130 ns for XSAVEC + XRSTOR on the EPYC VM) when so.
  o.andRspImm8(-16);
  o.movRaxImm64(reinterpret_cast<uint64_t>(pending));
  o.callRax();
  o.testAlAl();
  size_t skip = o.jzRel32();
  o.andRspImm8(-64);  // XSAVE needs a 64-byte aligned area (FXSAVE 16); the call needs 16
  o.subRspImm32(save.areaSize);
  if (save.method == StateSave::kFxsave) {
    o.fxsave64Rsp();
  } else {
    // XSAVE and XSAVEC write only XSTATE_BV and XCOMP_BV of the header, and XRSTOR faults
    // (#GP) on non-zero reserved header bytes: the stack area holds garbage, so zero it.
    o.xorEaxEax();
    for (uint32_t b = 0; b < kXsaveHeaderSize; b += 8) o.movRspDisp32Rax(kXsaveHeader + b);
    o.allComponentsMask();
    if (save.method == StateSave::kXsavec) {
      o.xsavec64Rsp();
    } else {
      o.xsave64Rsp();
    }
  }
  o.movRaxImm64(reinterpret_cast<uint64_t>(slowPath));
  o.callRax();
  if (save.method == StateSave::kFxsave) {
    o.fxrstor64Rsp();
  } else {
    o.allComponentsMask();  // XRSTOR's form (standard/compacted) comes from the header
    o.xrstor64Rsp();
  }
  o.bindRel32(skip);
  o.leaRspRbpDisp8(static_cast<int8_t>(-kPushedBelowRbp));
  for (size_t i = sizeof kSaved / sizeof kSaved[0]; i-- > 0;) o.pop(kSaved[i]);
  o.popfq();
  o.pop(rbp);
  o.ret();
  return o.n;
}

}  // namespace patchcall::arch

// tests/support/isa.h on aarch64 (AAPCS64: the result in w0, the return address in x30).
#include "isa.h"

#include <csignal>
#include <cstring>

namespace patchcall::test {

namespace a64 = asmjit::a64;

namespace {
constexpr uint32_t kRet = 0xD65F03C0;          // ret (x30)
constexpr uint32_t kNop = 0xD503201F;
constexpr uint32_t kMovzW0 = 0x52800000;       // movz w0, #imm16
constexpr uint32_t kMovkW0Lsl16 = 0x72A00000;  // movk w0, #imm16, lsl #16
constexpr uint32_t kBl = 0x94000000, kB = 0x14000000, kImm26 = 0x03FFFFFF;
constexpr uint32_t kStpFrame = 0xA9BF7BFD;     // stp x29, x30, [sp, #-16]!
constexpr uint32_t kLdpFrame = 0xA8C17BFD;     // ldp x29, x30, [sp], #16
constexpr uint32_t kVeneerLoad = 0x58000050;   // ldr x16, #8
constexpr uint32_t kVeneerBranch = 0xD61F0200; // br x16

uint32_t word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}
void put(std::vector<uint8_t>& b, uint32_t w) {
  uint8_t x[4];
  std::memcpy(x, &w, 4);
  b.insert(b.end(), x, x + 4);
}
uintptr_t branchTarget(const uint8_t* p, uint32_t op) {
  uint32_t w = word(p);
  if ((w & ~kImm26) != op) return 0;
  int64_t words = static_cast<int64_t>(static_cast<int32_t>(w << 6) >> 6);  // sign-extend imm26
  return reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(words * 4);
}
}  // namespace

bool hasToggleAndBreakpointForms() { return false; }
bool hasForeignSites() { return true; }
std::vector<SiteForm> siteForms() { return {SiteForm::kDirect}; }
void emitJump(jit::Assembler& a, const asmjit::Label& label) { a.b(label); }
asmjit::Error emitInvalidInstruction(jit::Assembler& a) {
  return a.emit(a64::Inst::kIdAdd, a64::w0, a64::x1, a64::w2);  // a 64-bit source into a 32-bit add
}

void emitEnter(jit::Assembler& a) {
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16));
  a.mov(a64::x29, a64::sp);
}
void emitLeave(jit::Assembler& a) { a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16)); }
void emitRet(jit::Assembler& a) { a.ret(a64::x30); }
void emitSetResult(jit::Assembler& a, int value) {
  auto v = static_cast<uint32_t>(value);
  a.movz(a64::w0, v & 0xFFFF);
  a.movk(a64::w0, v >> 16, asmjit::arm::lsl(16));
}
void emitAddResult(jit::Assembler& a, int value) {
  a.movz(a64::w17, static_cast<uint32_t>(value) & 0xFFFF);  // x17 (IP1): free between calls
  a.movk(a64::w17, static_cast<uint32_t>(value) >> 16, asmjit::arm::lsl(16));
  a.add(a64::w0, a64::w0, a64::w17);
}
void emitFiller(jit::Assembler& a, size_t bytes) {
  for (; bytes >= 4; bytes -= 4) a.nop();
}

// x9 (caller-saved) holds the count; the poll keeps x0 (its stub saves x0-x18).
Status emitPollingSpin(jit::Assembler& a, int32_t counter, int32_t flag) {
  asmjit::Label top = a.newLabel();
  a.bind(top);
  a.ldr(a64::x9, a64::ptr(a64::x0, counter));
  a.add(a64::x9, a64::x9, 1);
  a.str(a64::x9, a64::ptr(a64::x0, counter));
  PATCHCALL_TRY(jit::emitSafepointPoll(a));
  a.ldrb(a64::w9, a64::ptr(a64::x0, flag));
  a.cbz(a64::w9, top);
  return Status::ok();
}

size_t arenaSizeWithinCallReach() { return size_t{64} << 20; }
bool fixedCallsReachAnywhere() { return true; }

size_t instructionAlignment() { return 4; }

void clearCalleeSaved(ucontext_t& c) {
  for (int r = 19; r <= 29; ++r) c.uc_mcontext.regs[r] = 0;
}

std::vector<uint8_t> returnerBytes(int value) {
  auto v = static_cast<uint32_t>(value);
  std::vector<uint8_t> b;
  put(b, kMovzW0 | (v & 0xFFFF) << 5);
  put(b, kMovkW0Lsl16 | (v >> 16) << 5);
  put(b, kRet);
  return b;
}
int returnerValue(const void* code) {
  auto* p = static_cast<const uint8_t*>(code);
  uint32_t lo = word(p), hi = word(p + 4);
  if ((lo & 0xFFE0001F) != kMovzW0 || (hi & 0xFFE0001F) != kMovkW0Lsl16) return 0;
  return static_cast<int>(((lo >> 5) & 0xFFFF) | ((hi >> 5) & 0xFFFF) << 16);
}
std::vector<uint8_t> retBytes() {
  std::vector<uint8_t> b;
  put(b, kRet);
  return b;
}
uint8_t fillByte() { return 0x00; }
int freedCodeSignal() { return SIGILL; }

size_t callFieldOffset() { return 0; }
size_t callSize() { return 4; }
bool encodeCall(uintptr_t at, uintptr_t target, uint8_t* out) {
  int64_t d = static_cast<int64_t>(target) - static_cast<int64_t>(at);
  if (d % 4 != 0 || d < -(int64_t{1} << 27) || d >= (int64_t{1} << 27)) return false;
  uint32_t w = kBl | (static_cast<uint32_t>(d / 4) & kImm26);
  std::memcpy(out, &w, 4);
  return true;
}
uintptr_t directCallTarget(const uint8_t* site) { return branchTarget(site, kBl); }
uintptr_t directJumpTarget(const uint8_t* code) { return branchTarget(code, kB); }
uintptr_t absoluteJumpTarget(const uint8_t* code) {
  if (word(code) != kVeneerLoad || word(code + 4) != kVeneerBranch) return 0;
  uintptr_t t;
  std::memcpy(&t, code + 8, 8);
  return t;
}

// stp x29, x30, [sp, #-16]! ; bl ; ldp x29, x30, [sp], #16 ; ret
const size_t kForeignCallOffset = 4;
std::vector<uint8_t> foreignCaller(uintptr_t at, uintptr_t initialTarget) {
  std::vector<uint8_t> b;
  put(b, kStpFrame);
  put(b, kNop);
  put(b, kLdpFrame);
  put(b, kRet);
  if (!encodeCall(at + kForeignCallOffset, initialTarget, b.data() + kForeignCallOffset)) return {};
  return b;
}

}  // namespace patchcall::test

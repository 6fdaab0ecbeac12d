// tests/support/isa.h on x86-64.
#include "isa.h"

#include <csignal>
#include <cstring>

namespace patchcall::test {

namespace x86 = asmjit::x86;

bool hasToggleAndBreakpointForms() { return true; }
bool hasForeignSites() { return true; }
std::vector<SiteForm> siteForms() { return {SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint}; }
void emitJump(jit::Assembler& a, const asmjit::Label& label) { a.jmp(label); }
asmjit::Error emitInvalidInstruction(jit::Assembler& a) { return a.emit(x86::Inst::kIdMov, x86::eax, x86::rbx); }

void emitEnter(jit::Assembler& a) { a.sub(x86::rsp, 8); }
void emitLeave(jit::Assembler& a) { a.add(x86::rsp, 8); }
void emitRet(jit::Assembler& a) { a.ret(); }
void emitSetResult(jit::Assembler& a, int value) { a.mov(x86::eax, value); }
void emitAddResult(jit::Assembler& a, int value) { a.add(x86::eax, value); }
void emitFiller(jit::Assembler& a, size_t bytes) {
  for (; bytes >= 5; bytes -= 5) a.mov(x86::ecx, 0x5a5a5a5a);
  for (; bytes > 0; --bytes) a.nop();
}

Status emitPollingSpin(jit::Assembler& a, int32_t counter, int32_t flag) {
  asmjit::Label top = a.newLabel();
  a.bind(top);
  a.lock().add(x86::qword_ptr(x86::rdi, counter), 1);
  PATCHCALL_TRY(jit::emitSafepointPoll(a));
  a.cmp(x86::byte_ptr(x86::rdi, flag), 0);
  a.je(top);
  return Status::ok();
}

size_t arenaSizeWithinCallReach() { return Options{}.arenaSize; }
bool fixedCallsReachAnywhere() { return false; }

size_t instructionAlignment() { return 1; }

void clearCalleeSaved(ucontext_t& c) {
  for (int r : {REG_RBP, REG_R12, REG_R13, REG_R14, REG_R15}) c.uc_mcontext.gregs[r] = 0;
}

std::vector<uint8_t> returnerBytes(int value) {
  std::vector<uint8_t> b = {0xB8, 0, 0, 0, 0, 0xC3};  // mov eax, imm32 ; ret
  std::memcpy(b.data() + 1, &value, 4);
  return b;
}
int returnerValue(const void* code) {
  auto* p = static_cast<const uint8_t*>(code);
  if (p[0] != 0xB8) return 0;
  int v;
  std::memcpy(&v, p + 1, 4);
  return v;
}
std::vector<uint8_t> retBytes() { return {0xC3}; }
uint8_t fillByte() { return 0xCC; }
int freedCodeSignal() { return SIGTRAP; }

size_t callFieldOffset() { return 1; }
size_t callSize() { return 5; }
bool encodeCall(uintptr_t at, uintptr_t target, uint8_t* out) {
  int64_t d = static_cast<int64_t>(target) - static_cast<int64_t>(at + 5);
  if (d < INT32_MIN || d > INT32_MAX) return false;
  auto rel = static_cast<int32_t>(d);
  out[0] = 0xE8;
  std::memcpy(out + 1, &rel, 4);
  return true;
}
namespace {
uintptr_t rel32Target(const uint8_t* p, uint8_t opcode) {
  if (p[0] != opcode) return 0;
  int32_t rel;
  std::memcpy(&rel, p + 1, 4);
  return reinterpret_cast<uintptr_t>(p) + 5 + static_cast<intptr_t>(rel);
}
}  // namespace
uintptr_t directCallTarget(const uint8_t* site) { return rel32Target(site, 0xE8); }
uintptr_t directJumpTarget(const uint8_t* code) { return rel32Target(code, 0xE9); }
uintptr_t absoluteJumpTarget(const uint8_t* code) {
  const uint8_t jmpRip0[6] = {0xFF, 0x25, 0, 0, 0, 0};
  if (std::memcmp(code, jmpRip0, 6) != 0) return 0;
  uintptr_t t;
  std::memcpy(&t, code + 6, 8);
  return t;
}

// sub rsp, 8 ; call rel32 ; add rsp, 8 ; ret
const size_t kForeignCallOffset = 4;
std::vector<uint8_t> foreignCaller(uintptr_t at, uintptr_t initialTarget) {
  std::vector<uint8_t> b = {0x48, 0x83, 0xEC, 0x08, 0, 0, 0, 0, 0, 0x48, 0x83, 0xC4, 0x08, 0xC3};
  if (!encodeCall(at + kForeignCallOffset, initialTarget, b.data() + kForeignCallOffset)) return {};
  return b;
}

}  // namespace patchcall::test

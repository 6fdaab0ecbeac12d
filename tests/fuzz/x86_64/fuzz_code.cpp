// tests/fuzz/fuzz_code.h on x86-64: the accumulator is ebx (callee-saved: pushed, which also
// keeps rsp 16-byte aligned at the calls), the result eax.
#include "fuzz_code.h"

#include <cstring>

namespace patchcall::fuzz::code {

namespace x86 = asmjit::x86;

void emitReturner(jit::Assembler& a, uint32_t value) {
  a.mov(x86::eax, value);
  a.ret();
}
void emitCallerEnter(jit::Assembler& a) {
  a.push(x86::rbx);
  a.xor_(x86::ebx, x86::ebx);
}
void emitAccumulate(jit::Assembler& a) {
  a.imul(x86::ebx, x86::ebx, 31);
  a.add(x86::ebx, x86::eax);
}
void emitCallerLeave(jit::Assembler& a) {
  a.mov(x86::eax, x86::ebx);
  a.pop(x86::rbx);
  a.ret();
}

void rawEnter(std::vector<uint8_t>& code) { code.insert(code.end(), {0x53, 0x31, 0xDB}); }  // push rbx ; xor ebx, ebx
void rawNop(std::vector<uint8_t>& code) { code.push_back(0x90); }
uint32_t rawSite(std::vector<uint8_t>& code, SiteForm form) {
  if (form == SiteForm::kDirect) while ((code.size() + 1) % 4 != 0) code.push_back(0x90);  // the rel32 4-aligned
  if (form == SiteForm::kToggle && code.size() % 2 != 0) code.push_back(0x90);
  auto at = static_cast<uint32_t>(code.size());
  if (form == SiteForm::kToggle) code.insert(code.end(), {0x66, 0x90, 0xE8, 0, 0, 0, 0, 0xEB, 0x05, 0xE8, 0, 0, 0, 0});
  else code.insert(code.end(), {0xE8, 0, 0, 0, 0});
  return at;
}
void rawAccumulate(std::vector<uint8_t>& code) { code.insert(code.end(), {0x6B, 0xDB, 0x1F, 0x01, 0xC3}); }  // imul ebx, ebx, 31 ; add ebx, eax
void rawLeave(std::vector<uint8_t>& code) { code.insert(code.end(), {0x89, 0xD8, 0x5B, 0xC3}); }  // mov eax, ebx ; pop rbx ; ret
std::vector<uint8_t> retBytes() { return {0xC3}; }

bool startsWithFill(const uint8_t* p) { return p[0] == 0xCC; }

std::vector<uint8_t> returnerBytes(uint32_t value) {
  std::vector<uint8_t> b = {0xB8, 0, 0, 0, 0, 0xC3};  // mov eax, imm32 ; ret
  std::memcpy(b.data() + 1, &value, 4);
  return b;
}

const size_t kForeignCallOffset = 1;
std::vector<uint8_t> foreignCaller(uintptr_t at, const void* target) {
  std::vector<uint8_t> b = {0x53, 0xE8, 0, 0, 0, 0, 0x5B, 0xC3};  // push rbx (rsp 16-aligned at the call) ; call ; pop rbx ; ret
  auto rel = static_cast<int32_t>(reinterpret_cast<intptr_t>(target) - static_cast<intptr_t>(at + kForeignCallOffset + 5));
  std::memcpy(b.data() + kForeignCallOffset + 1, &rel, 4);
  return b;
}
uint8_t fillByte() { return 0xCC; }

}  // namespace patchcall::fuzz::code

// patchcall-stress on x86-64 — the caller groups' and targets' instructions (isa.h).
//
// Caller group registers: r14 = frame, rbx = iterations left, r15 = key cells, r12 = `pre`
// across the call (all callee-saved, so calls to C++ keep them). Memory order: TSO keeps
// loads in program order and stores in program order, so `pre := end`, the call and
// `post := begin` need nothing but program order (versions.h).
#include <ucontext.h>

#include <cstddef>

#include "../asm_status.h"
#include "../callers.h"
#include "../isa.h"
#include "../versions.h"

namespace stress::isa {
namespace {

using namespace asmjit::x86;
using patchcall::Status;
using stress::asmStatus;

Mem endOf(uint32_t keyCells) { return qword_ptr(r15, static_cast<int32_t>(keyCells + offsetof(KeyCells, end))); }
Mem beginOf(uint32_t keyCells) { return qword_ptr(r15, static_cast<int32_t>(keyCells + offsetof(KeyCells, begin))); }

}  // namespace

const char* const kName = "x86-64";
const uint8_t kTrapFillByte = 0xCC;  // int3

std::vector<patchcall::SiteForm> siteForms() {
  using patchcall::SiteForm;
  return {SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint};
}

Status emitGroupEntry(patchcall::jit::Assembler& a) {
  // Six pushes + 8 keep rsp 16-byte aligned at every call below (entry rsp is 8 mod 16).
  for (const Gp& r : {rbx, rbp, r12, r13, r14, r15}) PATCHCALL_TRY(asmStatus(a.push(r)));
  PATCHCALL_TRY(asmStatus(a.sub(rsp, 8)));
  PATCHCALL_TRY(asmStatus(a.mov(r14, rdi)));
  PATCHCALL_TRY(asmStatus(a.mov(rbx, rsi)));
  return asmStatus(a.mov(r15, qword_ptr(r14, offsetof(CallerFrame, cells))));
}

Status emitLoadPre(patchcall::jit::Assembler& a, uint32_t keyCells) { return asmStatus(a.mov(r12, endOf(keyCells))); }

Status emitCheck(patchcall::jit::Assembler& a, uint32_t keyCells, const asmjit::Label& fail) {
  PATCHCALL_TRY(asmStatus(a.mov(rdx, beginOf(keyCells))));
  // valid iff (returned - pre) <= (post - pre), unsigned: one compare covers both bounds
  PATCHCALL_TRY(asmStatus(a.sub(rax, r12)));
  PATCHCALL_TRY(asmStatus(a.sub(rdx, r12)));
  PATCHCALL_TRY(asmStatus(a.cmp(rax, rdx)));
  return asmStatus(a.ja(fail));
}

Status emitGroupEnd(patchcall::jit::Assembler& a, const asmjit::Label& loop, const asmjit::Label& exit) {
  PATCHCALL_TRY(asmStatus(a.dec(rbx)));
  PATCHCALL_TRY(asmStatus(a.jnz(loop)));
  PATCHCALL_TRY(asmStatus(a.xor_(eax, eax)));
  PATCHCALL_TRY(asmStatus(a.bind(exit)));
  PATCHCALL_TRY(asmStatus(a.add(rsp, 8)));
  for (const Gp& r : {r15, r14, r13, r12, rbp, rbx}) PATCHCALL_TRY(asmStatus(a.pop(r)));
  return asmStatus(a.ret());
}

// rax and rdx hold returned - pre and post - pre (emitCheck).
Status emitFailStub(patchcall::jit::Assembler& a, const asmjit::Label& fail, const asmjit::Label& exit, uint32_t index) {
  PATCHCALL_TRY(asmStatus(a.bind(fail)));
  PATCHCALL_TRY(asmStatus(a.add(rax, r12)));
  PATCHCALL_TRY(asmStatus(a.add(rdx, r12)));
  PATCHCALL_TRY(asmStatus(a.mov(qword_ptr(r14, offsetof(CallerFrame, returned)), rax)));
  PATCHCALL_TRY(asmStatus(a.mov(qword_ptr(r14, offsetof(CallerFrame, pre)), r12)));
  PATCHCALL_TRY(asmStatus(a.mov(qword_ptr(r14, offsetof(CallerFrame, post)), rdx)));
  PATCHCALL_TRY(asmStatus(a.mov(eax, index + 1)));
  return asmStatus(a.jmp(exit));
}

// `dec qword [r14 + 32]; jnz skip; call yield; skip:`, with rsp stepped down 8 around the call
// at a function's entry (rsp is 8 mod 16 there; 16-aligned after a group's polls).
Status emitYieldPoint(patchcall::jit::Assembler& a, void (*yield)(), bool atEntry) {
  asmjit::Label skip = a.newLabel();
  PATCHCALL_TRY(asmStatus(a.dec(qword_ptr(r14, kYieldCountdownOffset))));
  PATCHCALL_TRY(asmStatus(a.jnz(skip)));
  if (atEntry) PATCHCALL_TRY(asmStatus(a.sub(rsp, 8)));
  PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, reinterpret_cast<const void*>(yield)));
  if (atEntry) PATCHCALL_TRY(asmStatus(a.add(rsp, 8)));
  return asmStatus(a.bind(skip));
}

// [sub rsp, 8 ; call toggleStall ; add rsp, 8] ; mov r12, [r15 + end] ; ret
Status emitStrictStub(patchcall::jit::Assembler& a, void (*toggleStall)(), uint32_t keyCells) {
  if (toggleStall != nullptr) {
    PATCHCALL_TRY(asmStatus(a.sub(rsp, 8)));  // rsp is 8 mod 16 inside the stub
    PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, reinterpret_cast<const void*>(toggleStall)));
    PATCHCALL_TRY(asmStatus(a.add(rsp, 8)));
  }
  PATCHCALL_TRY(asmStatus(a.mov(r12, endOf(keyCells))));
  return asmStatus(a.ret());
}

size_t targetStride(bool spread) { return spread ? 0x110 : 16; }

// mov rax, imm64(&cell) ; mov rax, [rax] ; ret (TSO: the load sees every store the updater
// made before the site's rewrite)
Status emitPoolEntry(patchcall::jit::Assembler& a, const std::atomic<uint64_t>* cell) {
  PATCHCALL_TRY(asmStatus(a.mov(rax, asmjit::imm(reinterpret_cast<uint64_t>(cell)))));
  PATCHCALL_TRY(asmStatus(a.mov(rax, qword_ptr(rax))));
  return asmStatus(a.ret());
}

Status emitTagEntry(patchcall::jit::Assembler& a, uint64_t tag) {
  PATCHCALL_TRY(asmStatus(a.mov(rax, asmjit::imm(tag))));
  return asmStatus(a.ret());
}

FaultContext faultContext(int sig, const siginfo_t* info, const void* ucontext) {
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
  FaultContext f;
  f.pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  f.address = sig == SIGTRAP ? f.pc - 1 : (sig == SIGSEGV || sig == SIGBUS) ? reinterpret_cast<uintptr_t>(info->si_addr) : f.pc;
  return f;
}

// In a target a site called, the return address is on top of the stack.
uintptr_t faultReturnAddress(const void* ucontext) {
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
  auto rsp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
  return rsp % 8 == 0 ? *reinterpret_cast<const uintptr_t*>(rsp) : 0;
}

}  // namespace stress::isa

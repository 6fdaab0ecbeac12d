// tinyvm — the lazy-compile stub on x86-64 (jit/backend.h; aarch64/lazy_stub.cpp is the A64 one):
//
//   push rbp ; mov rbp, rsp
//   push r9 ; push r8 ; push rcx ; push rdx ; push rsi ; push rdi   ; args[0..5] at rsp
//   mov rdx, rsp ; mov rdi, vm ; mov esi, index
//   call tier0Entry                         ; rsp is 16-byte aligned here
//   test rax, rax ; jz interpreted
//   pop rdi ; pop rsi ; pop rdx ; pop rcx ; pop r8 ; pop r9 ; pop rbp
//   xor r10d, r10d ; xor r11d, r11d ; pxor xmm0..15      ; see below
//   jmp rax                                 ; tail-jump: the code returns to our caller
// interpreted:
//   mov rax, [rsp] ; leave ; ret            ; tier0Entry left the result in args[0]
#include "jit/backend.h"

namespace tinyvm::jit {

namespace x86 = asmjit::x86;

patchcall::Status emitLazyStub(patchcall::jit::Assembler& a, const void* vm, uint32_t index, const void* tier0Entry) {
  asmjit::Label interpreted = a.newLabel();
  a.push(x86::rbp);
  a.mov(x86::rbp, x86::rsp);
  for (const x86::Gp& r : {x86::r9, x86::r8, x86::rcx, x86::rdx, x86::rsi, x86::rdi}) a.push(r);
  a.mov(x86::rdx, x86::rsp);
  a.mov(x86::rdi, asmjit::imm(reinterpret_cast<uintptr_t>(vm)));
  a.mov(x86::esi, asmjit::imm(index));
  if (a.runtime().arenaInfo().nearText) {
    PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, tier0Entry));
  } else {  // the arena landed far from our text: an absolute call
    a.mov(x86::rax, asmjit::imm(reinterpret_cast<uintptr_t>(tier0Entry)));
    a.call(x86::rax);
  }
  a.test(x86::rax, x86::rax);
  a.jz(interpreted);
  for (const x86::Gp& r : {x86::rdi, x86::rsi, x86::rdx, x86::rcx, x86::r8, x86::r9, x86::rbp}) a.pop(r);
  // Scratch registers still hold whatever the compiler left there, possibly this stub's own
  // address. JIT code never writes r10 or the vector registers, so a safepoint poll would
  // save that value on the stack for every later stack scan to find, pinning the retired
  // stub for the thread's lifetime. Scrub them before leaving.
  a.xor_(x86::r10d, x86::r10d);
  a.xor_(x86::r11d, x86::r11d);
  for (uint32_t i = 0; i < 16; ++i) a.pxor(x86::xmm(i), x86::xmm(i));
  a.jmp(x86::rax);
  a.bind(interpreted);
  a.mov(x86::rax, x86::qword_ptr(x86::rsp));
  a.leave();
  a.ret();
  return patchcall::Status::ok();
}

}  // namespace tinyvm::jit

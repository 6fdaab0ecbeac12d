// tinyvm — the lazy-compile stub on A64 (jit/backend.h; x86_64/lazy_stub.cpp is the x86 one):
//
//   stp x29, x30, [sp, #-16]! ; mov x29, sp
//   sub sp, sp, #48 ; stp x0, x1, [sp] ; stp x2, x3, [sp, #16] ; stp x4, x5, [sp, #32]
//   mov x2, sp ; mov x0, vm ; mov w1, index       ; args[0..5] at sp, sp 16-byte aligned
//   bl tier0Entry                                 ; jit::emitFixedCall: a veneer if far
//   cbz x0, interpreted
//   mov x16, x0                                   ; IP0: free at a branch between functions
//   ldp x0, x1, [sp] ; ldp x2, x3, [sp, #16] ; ldp x4, x5, [sp, #32]
//   mov sp, x29 ; ldp x29, x30, [sp], #16
//   mov x6..x15, x17, x18, #0 ; fmov d0..d7, d16..d31, xzr   ; see below
//   br x16                                        ; tail-jump: the code returns to our caller
// interpreted:
//   ldr x0, [sp] ; mov sp, x29 ; ldp x29, x30, [sp], #16 ; ret   ; the result is args[0]
#include "jit/backend.h"

namespace tinyvm::jit {

namespace a64 = asmjit::a64;

patchcall::Status emitLazyStub(patchcall::jit::Assembler& a, const void* vm, uint32_t index, const void* tier0Entry) {
  asmjit::Label interpreted = a.newLabel();
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16));
  a.mov(a64::x29, a64::sp);
  a.sub(a64::sp, a64::sp, 48);
  for (uint32_t i = 0; i < kMaxParams; i += 2) a.stp(a64::GpX(i), a64::GpX(i + 1), a64::ptr(a64::sp, static_cast<int32_t>(8 * i)));
  a.mov(a64::x2, a64::sp);
  uint64_t vmBits = reinterpret_cast<uintptr_t>(vm);
  a.movz(a64::x0, vmBits & 0xFFFF);
  for (uint32_t shift = 16; shift < 64; shift += 16) a.movk(a64::x0, (vmBits >> shift) & 0xFFFF, asmjit::arm::lsl(shift));
  a.movz(a64::w1, index & 0xFFFF);
  a.movk(a64::w1, index >> 16, asmjit::arm::lsl(16));
  PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, tier0Entry));
  a.cbz(a64::x0, interpreted);
  a.mov(a64::x16, a64::x0);
  for (uint32_t i = 0; i < kMaxParams; i += 2) a.ldp(a64::GpX(i), a64::GpX(i + 1), a64::ptr(a64::sp, static_cast<int32_t>(8 * i)));
  a.mov(a64::sp, a64::x29);
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16));
  // The C++ code below left its temporaries in the caller-saved registers, possibly this stub's
  // own address. The compiled code does not write most of them, and a safepoint poll saves
  // x0-x18 and q0-q31 on the stack, where every later stack scan would find that address and
  // keep the retired stub for the thread's lifetime. Scrub them before leaving; not d8-d15,
  // which are callee-saved (our caller's values: scrubbing them corrupted C++ callers).
  for (uint32_t i = 6; i <= 18; ++i) {
    if (i != 16) a.mov(a64::GpX(i), a64::xzr);
  }
  for (uint32_t i = 0; i < 32; ++i) {
    if (i < 8 || i > 15) a.fmov(a64::VecD(i), a64::xzr);  // zeroes the whole q register
  }
  a.br(a64::x16);
  a.bind(interpreted);
  a.ldr(a64::x0, a64::ptr(a64::sp));
  a.mov(a64::sp, a64::x29);
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16));
  a.ret(a64::x30);
  return patchcall::Status::ok();
}

}  // namespace tinyvm::jit

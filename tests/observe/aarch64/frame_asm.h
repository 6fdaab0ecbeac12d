// observe tests, aarch64 — the frame-record prologue and epilogue (frame_cfi.h's layout)
// through jit::Assembler, for code installed with jit::install and a FrameLayout.
#pragma once

#include "patchcall/jit.h"

namespace observe_test {

inline void emitFramePrologue(patchcall::jit::Assembler& a) {
  a.stp(asmjit::a64::x29, asmjit::a64::x30, asmjit::a64::ptr_pre(asmjit::a64::sp, -16));
  a.mov(asmjit::a64::x29, asmjit::a64::sp);
}
inline void emitFrameEpilogue(patchcall::jit::Assembler& a) {
  a.ldp(asmjit::a64::x29, asmjit::a64::x30, asmjit::a64::ptr_post(asmjit::a64::sp, 16));
  a.ret(asmjit::a64::x30);
}

}  // namespace observe_test

// observe tests, x86-64 — the frame-pointer prologue and epilogue (frame_cfi.h's layout)
// through jit::Assembler, for code installed with jit::install and a FrameLayout.
#pragma once

#include "patchcall/jit.h"

namespace observe_test {

inline void emitFramePrologue(patchcall::jit::Assembler& a) {
  a.push(asmjit::x86::rbp);
  a.mov(asmjit::x86::rbp, asmjit::x86::rsp);
}
inline void emitFrameEpilogue(patchcall::jit::Assembler& a) {
  a.leave();
  a.ret();
}

}  // namespace observe_test

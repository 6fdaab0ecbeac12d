// patchcall x86-64 — the emitters on asmjit::x86::Assembler (the seam: jit/emitters.h).
#pragma once

#include <asmjit/x86.h>

#include "patchcall/jit.h"

namespace patchcall::jit::isa {

using IsaAssembler = asmjit::x86::Assembler;

// `call rel32` bound to `key` in `form` (kAuto resolved here); the toggle with an optional
// stall call between selector and call A (testing::emitToggleWithStall).
Status emitCall(IsaAssembler& a, detail::Emission& e, Key key, SiteForm form);
Status emitToggle(IsaAssembler& a, detail::Emission& e, Key key, void (*stall)());
Status emitFixedCall(IsaAssembler& a, detail::Emission& e, const void* target);
// `cmp byte [rip+flag], 0 ; jne slow`.
Status emitPoll(IsaAssembler& a, detail::Emission& e);
// The poll slow paths: `lea rsp,[rsp-128] ; call stub ; lea rsp,[rsp+128] ; jmp back`.
Status emitOutOfLine(IsaAssembler& a, detail::Emission& e);
// Every rel32 the fixups name, for code copied to `rw` that runs at `base`.
Status link(const detail::Emission& e, uintptr_t base, uint8_t* rw, const detail::LinkTargets& targets);

}  // namespace patchcall::jit::isa

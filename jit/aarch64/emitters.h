// patchcall aarch64 — the emitters on asmjit::a64::Assembler (the seam: jit/emitters.h).
// Includes only the aarch64 arch headers, so an x86-64 host builds this ISA's emitters too
// (tests/arch_aarch64/a64_jit_emission_test.cpp decodes what they write with Capstone).
#pragma once

#include <asmjit/core.h>
#include <asmjit/arm/a64assembler.h>

#include "patchcall/jit.h"

namespace patchcall::jit::isa {

using IsaAssembler = asmjit::a64::Assembler;

// `bl imm26` bound to `key`: kDirect or kAuto (recorded as kDirect); kToggle and kBreakpoint
// are refused (arch::kUnsupportedFormWhy). emitToggle refuses as well.
Status emitCall(IsaAssembler& a, detail::Emission& e, Key key, SiteForm form);
Status emitToggle(IsaAssembler& a, detail::Emission& e, Key key, void (*stall)());
// `bl imm26` to `target` (4-byte aligned), through a veneer when link finds it out of reach.
Status emitFixedCall(IsaAssembler& a, detail::Emission& e, const void* target);
// `adrp x16, flag ; ldrb w16, [x16, #lo12] ; cbnz w16, slow`.
Status emitPoll(IsaAssembler& a, detail::Emission& e);
// The poll slow paths (`stp x29, x30, [sp, #-16]! ; bl stub ; ldp x29, x30, [sp], #16 ; b back`),
// then one veneer per distinct call target (8-byte aligned), each filled in by link.
Status emitOutOfLine(IsaAssembler& a, detail::Emission& e);
// Every veneer, BL and poll load the fixups name, for code copied to `rw` that runs at `base`:
// a BL whose target is in reach goes there directly, else to its veneer.
Status link(const detail::Emission& e, uintptr_t base, uint8_t* rw, const detail::LinkTargets& targets);

}  // namespace patchcall::jit::isa

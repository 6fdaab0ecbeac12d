// patchcall jit — the instruction-set seam of the emitters: the host ISA's jit/<isa>/emitters.h.
//
// Each ISA defines, in namespace patchcall::jit::isa, on its own asmjit assembler (IsaAssembler)
// and the ISA-neutral record detail::Emission (patchcall/jit.h):
//   emitCall, emitToggle, emitFixedCall, emitPoll   the inline instructions, with their fixups
//   emitOutOfLine                                   what install() appends (poll slow paths,
//                                                   veneers), once, before flattening
//   link                                            the fixups, applied to the copied code at
//                                                   its final address
// Every byte they embed or patch comes from runtime/arch/<isa>/ (included directly, not
// through arch.h, so a host can build another ISA's emitters: tests/arch_aarch64/ does).
// jit/assembler.cpp, which holds everything else (argument checks, the install steps), is the
// same for every ISA. The two ISAs' files define the same names: never link both into one
// binary (as with runtime/arch/).
#pragma once

#if defined(__x86_64__)
#include "x86_64/emitters.h"
#elif defined(__aarch64__)
#include "aarch64/emitters.h"
#else
#error "patchcall::jit: no emitters for this instruction set (jit/<isa>/)"
#endif

// patchcall — the instruction-set seam for debug and unwind information (runtime/observe/).
//
// Selects the ISA's definitions of, in namespace patchcall::arch:
//   kElfMachine                          e_machine of the in-memory ELF images (gdb, jitdump)
//   FrameCfiRange, checkFramePointerCode(), buildFramePointerEhFrame()
//                                        the .eh_frame bytes of a declared frame layout
// Kept apart from arch.h while that seam is being reworked; it can be folded into it.
#pragma once

#if defined(__x86_64__)
#include "x86_64/frame_cfi.h"
#elif defined(__aarch64__)
#include "aarch64/frame_cfi.h"
#else
#error "patchcall: no unwind information for this instruction set (runtime/arch/<isa>/frame_cfi.h)"
#endif

// patchcall — the instruction-set seam for debug and unwind information (runtime/observe/).
//
// Selects the ISA's definitions of, in namespace patchcall::arch:
//   kElfMachine                          e_machine of the in-memory ELF images (gdb, jitdump)
//   FrameCfiRange, checkFramePointerCode(), buildFramePointerEhFrame()
//                                        the .eh_frame bytes of a declared frame layout
// Kept apart from arch.h while that seam is being reworked; it can be folded into it.
#pragma once

#include "x86_64/frame_cfi.h"

// patchcall — where the function around an address begins and ends, from a module's
// .eh_frame_hdr (the PT_GNU_EH_FRAME segment the unwinder itself searches): the binary-search
// table gives the FDE, the FDE gives [pc_begin, pc_begin + pc_range). Inline static call sites
// are only searched inside these bounds.
#pragma once

#include <cstdint>

namespace patchcall::detail::aot {

struct FunctionBounds {
  uintptr_t begin = 0;
  uintptr_t end = 0;
};

// False when the header or the FDE uses an encoding this reader does not handle (then the
// module's inline sites are not searched: its calls keep going through the trampoline), or
// when no FDE covers `pc`.
bool functionBounds(uintptr_t ehFrameHdr, uintptr_t pc, FunctionBounds* out) noexcept;

}  // namespace patchcall::detail::aot

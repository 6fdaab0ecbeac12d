// patchcall — fault injection for tests and the stress driver's --fault switch.
// Compiled only with PATCHCALL_TEST_HOOKS (CMake option PATCHCALL_TEST_HOOKS); never part
// of an installed, release API.
#pragma once

#ifndef PATCHCALL_TEST_HOOKS
#error "patchcall/testing.h needs a build with -DPATCHCALL_TEST_HOOKS=ON"
#endif

#include "patchcall/jit.h"

namespace patchcall::testing {

// Turns the toggle's grace-period rule off (true) or back on (false).
void setSkipToggleGrace(bool skip);
// Skips the cross-core sync after code writes.
void setSkipSync(bool skip);
// Frees retired blobs at once (no grace period, no stack scan): breaks invariant 4.
void setSkipRetireGrace(bool skip);
// Scans no parked stack and none at switchStack (only each thread's current stack, as before
// stacks were known): a parked fiber inside a retired blob no longer pins it.
void setSkipStackScan(bool skip);
// Called between the 4 byte stores of a toggle's (non-atomic) rel32 rewrite.
void setBetweenByteWrites(void (*hook)(int byteIndex));
// Emits a toggle site with a call to `stall` between the toggle and call A, so a test can
// hold a chosen thread exactly where the toggle race needs it. `stall` must preserve every
// register the surrounding JIT code relies on (test code keeps nothing live across it).
Status emitToggleWithStall(jit::Assembler& a, Key key, void (*stall)());

}  // namespace patchcall::testing

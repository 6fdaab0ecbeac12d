// patchcall — fault injection for tests and the stress driver's --fault switch.
// Compiled only with PATCHCALL_TEST_HOOKS (CMake option PATCHCALL_TEST_HOOKS); never part
// of an installed, release API.
#pragma once

#ifndef PATCHCALL_TEST_HOOKS
#error "patchcall/testing.h needs a build with -DPATCHCALL_TEST_HOOKS=ON"
#endif

#include <cstddef>
#include <cstdint>
#include <ostream>

#include "patchcall/jit.h"

namespace patchcall::testing {

// Turns the toggle's grace-period rule off (true) or back on (false).
void setSkipToggleGrace(bool skip);
// Strict updates (UpdateOptions::strict, KeyOptions::strictUpdates) return right after the
// flip, without the grace period that makes them strict.
void setSkipStrictGrace(bool skip);
// Skips the cross-core sync after code writes.
void setSkipSync(bool skip);
// Frees retired blobs at once (no grace period, no stack scan): breaks invariant 4.
void setSkipRetireGrace(bool skip);
// A fork() child keeps mapping the parent's code (no private copy): the two patch each other.
void setSkipForkCopy(bool skip);
// Scans no parked stack and none at switchStack (only each thread's current stack, as before
// stacks were known): a parked fiber inside a retired blob no longer pins it.
void setSkipStackScan(bool skip);
// Grace periods start, and the background publisher idles, without publishing deferred
// updates (UpdateOptions::publish); a blob freed while a write batch numbered before its
// retirement is unpublished is counted.
void setSkipPublishBeforeGracePeriod(bool skip);
uint64_t blobsFreedUnpublished();
// Retired stack-scan sets are kept readable and marked retired instead of freed; a scan that
// reads one after its grace period withdrew it is counted (a use after free in other builds).
void setQuarantineScanSets(bool keep);
uint64_t scansOfRetiredSets();
// Called between the 4 byte stores of a toggle's (non-atomic) rel32 rewrite.
void setBetweenByteWrites(void (*hook)(int byteIndex));
// Called first thing in every safepoint slow path (a JIT poll's stub or safepoint()), on the
// polling thread, before it reports its quiescent state; nullptr removes it. While one is set,
// every JIT poll slow path takes the stub's full path (extended state saved around the C++).
void setSafepointSlowHook(void (*hook)());
// Called in patchcall's SIGTRAP handler (signal context: async-signal-safe code only) before
// each lookup of the trapping site (step 0, 2, 4, ...) and before each read of its first byte
// (step 1, 3, 5, ...); nullptr removes it.
void setTrapHandlerHook(void (*hook)(int step));
// Called on the updating thread once per breakpoint round, after the round's int3 bytes are
// written and synced (the entries are published): the round is "on" while it runs.
void setAfterBreakpointInt3Hook(void (*hook)());
// Called in a fork child's atfork handler (the forking thread, before fork() returns there)
// after each runtime is made the child's, in the order they were created; nullptr removes it.
void setForkChildBetweenRuntimesHook(void (*hook)());

// The next `attempts` cross-core sync attempts (membarrier or mprotect) fail with `error`
// (each sync tries three times before it reports a failure).
void setSyncFailures(int attempts, int error);
// The process pretends its threads run with shadow stacks (CET / arm64 GCS): the SIGTRAP
// handler cannot emulate a call, so Breakpoint and foreign sites are refused and AOT inline
// calls keep their trampoline.
void setFakeShadowStack(bool on);
// Every cross-core sync sleeps `microseconds` first (0: off): a sync as slow as on a machine
// with many CPUs, without taking the CPU, so concurrent updaters queue for it.
void setSyncSleep(int microseconds);
// After `successes` more foreign-site code writes, the next one fails with EIO (as if the
// mapping changed between an update's probe and its write); -1 turns it off.
void setForeignWriteFailure(int successes);
// Runtimes created from now on judge the mprotect fallback as if uname() said
// `kernelRelease` and /proc/cpuinfo's flags were `cpuFlags`; nullptr: the real ones.
void setFallbackEnvironment(const char* kernelRelease, const char* cpuFlags);

// The instruction a runtime's safepoint stub saves the extended register state with.
enum class SafepointSave : uint8_t { kAuto = 0, kXsavec, kXsave, kFxsave };
inline const char* toString(SafepointSave save) {
  static const char* const kNames[] = {"auto", "xsavec", "xsave", "fxsave"};
  return static_cast<size_t>(save) < 4 ? kNames[static_cast<size_t>(save)] : "?";
}
inline std::ostream& operator<<(std::ostream& os, SafepointSave save) { return os << toString(save); }
// Runtimes created from now on use `save` when the CPU and OS support it (else the best they
// do); kAuto, the default, always picks the best. Lets tests run every stub encoding.
void setSafepointSave(SafepointSave save);
// What `rt`'s stub uses (never kAuto), and the bytes it reserves on the stack to save into.
SafepointSave safepointSaveMethod(const Runtime& rt);
uint32_t safepointSaveAreaSize(const Runtime& rt);

// Emits a toggle site with a call to `stall` between the toggle and call A, so a test can
// hold a chosen thread exactly where the toggle race needs it. `stall` must preserve every
// register the surrounding JIT code relies on (test code keeps nothing live across it).
Status emitToggleWithStall(jit::Assembler& a, Key key, void (*stall)());

}  // namespace patchcall::testing

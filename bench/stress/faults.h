// patchcall-stress — the hidden fault switch (builds with PATCHCALL_TEST_HOOKS only).
//
//   --fault=skip-sync   updates skip the cross-core sync after their code writes
//   --fault=skip-grace  the toggle's grace-period rule is off; implies --widen-race
//   --fault=skip-retire-grace  retired blobs are freed (int3-filled) at once, without a grace
//                       period or stack scan: a caller preempted inside an old target resumes
//                       on int3 (use with --retire)
//   --fault=skip-stack-scan  patchcall scans no parked stack and none at a switch (only each
//                       thread's current stack, as before stacks were known): a parked fiber
//                       inside a retired target resumes on int3 (use with --fibers --retire)
//   --fault=skip-strict-grace  implies --strict-toggle; strict updates return without their
//                       grace period: a thread past a toggle enters the old target after the
//                       update returned (use with --form toggle --widen-race)
//   --fault=skip-publish  grace periods start without publishing deferred updates: a blob a
//                       deferred update moved calls away from can be freed before the move is
//                       visible everywhere; the reclaimer's check counts each such free, and the
//                       run reports it as a violation (use with --publish deferred --retire)
//   --widen-race        makes the toggle race easy to hit without breaking the protocol:
//                       - toggle sites get a stall call between the toggle and call A; every
//                         kStallEvery-th pass sleeps, so a thread sits exactly where the race
//                         needs it (it has chosen call A) for a few updates;
//                       - the toggle's (non-atomic) rel32 rewrite sleeps after its first byte,
//                         so call A stays torn long enough for such a thread to run it;
//                       - pool targets are spread 0x110 bytes apart, so a torn rel32 lands
//                         in int3 padding and traps instead of reaching another target.
// With the grace period on, the updater waits for the stalled thread before it rewrites
// call A: a widened run must still report zero violations. With it off, the stalled thread
// runs a torn call A: the run must report violations and exit 1.
#pragma once

#include <string>

#include "options.h"

namespace stress {

// Applies the fault and widening hooks; returns false (with a message) when the build has
// no test hooks and a fault was asked for.
bool applyFaults(const Options& options, std::string* error);
// The stall for toggle sites when the race is widened, else nullptr.
void (*toggleStallHook(const Options& options))();
// Protocol violations patchcall's own checks counted in this process (test builds: blobs
// freed while a deferred move away from them was unpublished); 0 in other builds.
uint64_t libraryViolations();

}  // namespace stress

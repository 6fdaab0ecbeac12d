// patchcall — fault-injection switches, compiled in only with PATCHCALL_TEST_HOOKS.
// Release builds see testHooks() == nullptr and the compiler drops every check.
#pragma once

#include <atomic>

namespace patchcall::detail {

struct TestHooks {
  std::atomic<bool> skipToggleGrace{false};  // break the toggle's grace-period rule
  std::atomic<bool> skipStrictGrace{false};  // strict updates return without their grace period
  std::atomic<bool> skipSync{false};         // break the cross-core sync after code writes
  std::atomic<bool> skipRetireGrace{false};  // free retired blobs without grace period or scan
  std::atomic<bool> skipForkCopy{false};     // a fork child keeps sharing the parent's code
  std::atomic<bool> skipStackScan{false};    // scan no parked stack, and none at a switch
  // Grace periods start (and the background publisher idles) without publishing deferred
  // updates; a blob freed while some write batch numbered before its retirement is
  // unpublished counts in blobsFreedUnpublished.
  std::atomic<bool> skipPublishBeforeGracePeriod{false};
  std::atomic<uint64_t> blobsFreedUnpublished{0};
  // Called between the bytes of a non-atomic (toggle) rel32 write, to widen the tear window.
  std::atomic<void (*)(int byteIndex)> betweenBytes{nullptr};
  // Called first thing in every safepoint slow path, on the polling thread (for tests that
  // dirty registers where JIT code's live state must survive).
  std::atomic<void (*)()> inSafepointSlow{nullptr};
  // Called in the SIGTRAP handler before each table lookup (step 2 * pass) and before each
  // read of the site's byte (2 * pass + 1): a test stalls a thread there across rounds.
  std::atomic<void (*)(int step)> inTrapHandler{nullptr};
  // Called after each breakpoint round's int3 bytes are written and synced (JIT updates and
  // AOT batches).
  std::atomic<void (*)()> afterBreakpointInt3{nullptr};
  // Called in a fork child's handler after each runtime is made the child's (in creation
  // order), before the next one is: widens the window where earlier runtimes are ready and
  // later ones still hold the locks the parent's prepare took.
  std::atomic<void (*)()> betweenForkChildRuntimes{nullptr};
  // Runtime::create asks detectStateSave for this StateSave (0: auto) for its stub.
  std::atomic<uint8_t> stateSave{0};
  // The next `syncFailures` cross-core sync attempts fail with `syncErrno`.
  std::atomic<int> syncFailures{0}, syncErrno{0};
  // Every cross-core sync first sleeps this long (as a sync on a big machine takes, without
  // taking the CPU): lets a 2-core machine show concurrent updaters sharing syncs.
  std::atomic<int> syncSleepUs{0};
  // Foreign-site writes (after the probe) fail with EIO once `foreignWritesBeforeFailure`
  // more have succeeded; -1: never.
  std::atomic<int> foreignWritesBeforeFailure{-1};
  // The process pretends to run with shadow stacks (TrapTable::callEmulationBlocked). Also set
  // at startup by PATCHCALL_TEST_FAKE_SHADOW_STACK=1 (for modules registered before main).
  std::atomic<bool> fakeShadowStack{false};
  // When set, the mprotect fallback's safety check sees this kernel release and CPU flags.
  std::atomic<const char*> fakeKernelRelease{nullptr}, fakeCpuFlags{nullptr};
  // Retired scan sets are kept (leaked, marked retired) instead of freed; a scan that still
  // reads one after its grace period withdrew it counts in scansOfRetiredSets.
  std::atomic<bool> quarantineScanSets{false};
  std::atomic<uint64_t> scansOfRetiredSets{0};
};

#ifdef PATCHCALL_TEST_HOOKS
TestHooks* testHooks() noexcept;
#else
constexpr TestHooks* testHooks() noexcept { return nullptr; }
#endif

}  // namespace patchcall::detail

// patchcall — the fault-injection switches (patchcall/testing.h), in hook builds only.
#ifdef PATCHCALL_TEST_HOOKS
#include "test_hooks.h"

#include <cstdlib>

#include "runtime_access.h"
#include "runtime_impl.h"

namespace patchcall {

// Process-wide: one set of switches, read by every runtime (documented in the README).
detail::TestHooks* detail::testHooks() noexcept {
  static TestHooks* hooks = [] {
    static TestHooks h;
    const char* fake = std::getenv("PATCHCALL_TEST_FAKE_SHADOW_STACK");
    h.fakeShadowStack.store(fake != nullptr && fake[0] == '1');
    return &h;
  }();
  return hooks;
}

namespace testing {
void setSkipToggleGrace(bool skip) { detail::testHooks()->skipToggleGrace.store(skip); }
void setSkipSync(bool skip) { detail::testHooks()->skipSync.store(skip); }
void setSkipRetireGrace(bool skip) { detail::testHooks()->skipRetireGrace.store(skip); }
void setSkipForkCopy(bool skip) { detail::testHooks()->skipForkCopy.store(skip); }
void setSkipStackScan(bool skip) { detail::testHooks()->skipStackScan.store(skip); }
void setSkipPublishBeforeGracePeriod(bool skip) { detail::testHooks()->skipPublishBeforeGracePeriod.store(skip); }
uint64_t blobsFreedUnpublished() { return detail::testHooks()->blobsFreedUnpublished.load(); }
void setQuarantineScanSets(bool keep) { detail::testHooks()->quarantineScanSets.store(keep); }
uint64_t scansOfRetiredSets() { return detail::testHooks()->scansOfRetiredSets.load(); }
void setSkipStrictGrace(bool skip) { detail::testHooks()->skipStrictGrace.store(skip); }
void setBetweenByteWrites(void (*hook)(int)) { detail::testHooks()->betweenBytes.store(hook); }
void setSafepointSlowHook(void (*hook)()) { detail::testHooks()->inSafepointSlow.store(hook); }
void setTrapHandlerHook(void (*hook)(int)) { detail::testHooks()->inTrapHandler.store(hook); }
void setAfterBreakpointInt3Hook(void (*hook)()) { detail::testHooks()->afterBreakpointInt3.store(hook); }
void setForkChildBetweenRuntimesHook(void (*hook)()) { detail::testHooks()->betweenForkChildRuntimes.store(hook); }
void setSyncFailures(int attempts, int error) {
  detail::testHooks()->syncErrno.store(error);
  detail::testHooks()->syncFailures.store(attempts);
}
void setFakeShadowStack(bool on) { detail::testHooks()->fakeShadowStack.store(on); }
void setSyncSleep(int microseconds) { detail::testHooks()->syncSleepUs.store(microseconds); }
void setForeignWriteFailure(int successes) { detail::testHooks()->foreignWritesBeforeFailure.store(successes); }
void setFallbackEnvironment(const char* kernelRelease, const char* cpuFlags) {
  detail::testHooks()->fakeCpuFlags.store(cpuFlags);
  detail::testHooks()->fakeKernelRelease.store(kernelRelease);
}
// patchcall/testing.h is not included here (it pulls in asmjit): its SafepointSave has the
// values of arch::StateSave, which Emission.SafepointStubDecodesForEverySaveMethod checks.
enum class SafepointSave : uint8_t;
void setSafepointSave(SafepointSave save) { detail::testHooks()->stateSave.store(static_cast<uint8_t>(save)); }
SafepointSave safepointSaveMethod(const Runtime& rt) {
  return static_cast<SafepointSave>(detail::RuntimeAccess::impl(rt).page.stateSave.method);
}
uint32_t safepointSaveAreaSize(const Runtime& rt) { return detail::RuntimeAccess::impl(rt).page.stateSave.areaSize; }
}  // namespace testing

}  // namespace patchcall
#endif

// patchcall-stress — fault injection through patchcall/testing.h.
#include "faults.h"

#include <time.h>

#ifdef PATCHCALL_TEST_HOOKS
#include "patchcall/testing.h"
#endif

namespace stress {
namespace {

constexpr unsigned kStallEvery = 64;           // toggle passes between two stalls, per thread
constexpr long kStallNs = 1500 * 1000;         // a stall spans a few toggle updates
constexpr long kTornNs = 300 * 1000;           // call A stays torn this long after byte 0

void sleepNs(long ns) {
  timespec ts{0, ns};
  nanosleep(&ts, nullptr);
}

// Runs on a caller thread between a toggle and its call A; keeps every callee-saved register
// (a plain C++ function) and the JIT code holds nothing else live across it.
void stallBeforeCallA() {
  thread_local unsigned passes = 0;
  if (++passes % kStallEvery == 0) sleepNs(kStallNs);
}

[[maybe_unused]] void widenTear(int byteIndex) {
  if (byteIndex == 0) sleepNs(kTornNs);
}

}  // namespace

bool applyFaults(const Options& o, std::string* error) {
#ifdef PATCHCALL_TEST_HOOKS
  (void)error;
  patchcall::testing::setSkipSync(o.fault == Fault::kSkipSync);
  patchcall::testing::setSkipToggleGrace(o.fault == Fault::kSkipGrace);
  patchcall::testing::setSkipRetireGrace(o.fault == Fault::kSkipRetireGrace);
  patchcall::testing::setSkipForkCopy(o.fault == Fault::kSkipForkCopy);
  patchcall::testing::setSkipStackScan(o.fault == Fault::kSkipStackScan);
  patchcall::testing::setSkipStrictGrace(o.fault == Fault::kSkipStrictGrace);
  patchcall::testing::setSkipPublishBeforeGracePeriod(o.fault == Fault::kSkipPublish);
  patchcall::testing::setBetweenByteWrites(o.widenRace ? &widenTear : nullptr);
  return true;
#else
  if (o.fault != Fault::kNone || o.widenRace || o.strictToggle) {
    *error = "--fault, --widen-race and --strict-toggle need a build with -DPATCHCALL_TEST_HOOKS=ON";
    return false;
  }
  return true;
#endif
}

void (*toggleStallHook(const Options& o))() { return o.widenRace ? &stallBeforeCallA : nullptr; }

uint64_t libraryViolations() {
#ifdef PATCHCALL_TEST_HOOKS
  return patchcall::testing::blobsFreedUnpublished();
#else
  return 0;
#endif
}

}  // namespace stress

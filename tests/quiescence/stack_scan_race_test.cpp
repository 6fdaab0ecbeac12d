// A sanitizer-targeted race: the conservative stack scan of a thread that comes back online
// while a grace period is running. The grace period counted the thread quiescent while it was
// offline (and scanned its stack then), so it no longer waits for it; if the thread's next
// safepoint still scans the published ScanSet, the grace period can end -- and the reclaimer
// free the set -- in the middle of that scan. The test makes the window wide (the thread's
// stack holds ~2 MB of words pointing into the retired blob) and ends the grace period as the
// scan starts. Retired scan sets are kept readable and marked (testing::setQuarantineScanSets),
// so every build counts a scan that reads a set after its grace period withdrew it (the ASan
// build would report the same scan as a use after free without the quarantine). The count
// must be zero, and the blob must be freed once nothing holds it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "error_checks.h"
#include "patchcall/testing.h"
#include "quiescence_util.h"

namespace patchcall {
namespace {

using namespace std::chrono_literals;
using qtest::TestThread;
using qtest::waitUntil;

// Recurses `depth` frames of 32 KiB, each filled with `value`, then runs `atBottom`.
template <typename F>
__attribute__((noinline)) void deepStackOf(uintptr_t value, int depth, F&& atBottom) {
  volatile uintptr_t frame[4096];
  for (auto& w : frame) w = value;
  if (depth > 0) {
    deepStackOf(value, depth - 1, atBottom);
  } else {
    atBottom();
  }
  __asm__ volatile("" : : "r"(frame) : "memory");
}

TEST(HardeningScanRace, ThreadBackOnlineScansOnlyWhatTheGracePeriodWaitsFor) {
  testing::setQuarantineScanSets(true);
  uint64_t lateScansBefore = testing::scansOfRetiredSets();
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> blob = checks::installReturner(*rt, 5);
  ASSERT_TRUE(blob.isOk());
  ASSERT_TRUE(rt->retire(*blob).isOk());

  TestThread scanner, holder;
  ASSERT_TRUE(scanner.registerWith(*rt, "scanner").isOk());
  ASSERT_TRUE(scanner.run([] { (void)goOffline(); }));
  ASSERT_TRUE(holder.registerWith(*rt, "holder").isOk());  // online: holds the grace period

  // The barrier's grace period scans the offline scanner's stack, then waits for the holder.
  Status barrier(Error::kTimeout, "barrier never returned");
  std::thread waiter([&] { barrier = rt->barrier(3000ms); });
  ASSERT_TRUE(waitUntil([&] { return *rt->safepointFlag() != 0; })) << "no grace period started";
  std::this_thread::sleep_for(20ms);  // the waiter has checked (and scanned) the offline scanner

  std::atomic<bool> scanning{false};
  auto address = reinterpret_cast<uintptr_t>(blob->code);
  scanner.post([&] {
    (void)goOnline();
    deepStackOf(address, 64, [&] {
      scanning = true;
      safepoint();  // the counter moved: the slow path may scan ~2 MB of hits
    });
    qtest::scrubDeadStack();
    (void)goOffline();
  });
  holder.post([&] {
    while (!scanning.load()) std::this_thread::yield();
    safepoint();  // acknowledge: the grace period can end while the scanner scans
    (void)goOffline();
  });
  ASSERT_TRUE(scanner.waitIdle(10000ms));
  ASSERT_TRUE(holder.waitIdle(10000ms));
  waiter.join();
  // The scan legitimately found the blob (the deep stack pointed into it), and dead slots of
  // the scanner's stack may keep it conservatively pinned: the barrier may time out, but it
  // must return and nothing may touch a freed scan set (the ASan build checks that).
  EXPECT_TRUE(barrier.isOk() || barrier.code() == Error::kTimeout) << barrier.toString();
  EXPECT_EQ(testing::scansOfRetiredSets() - lateScansBefore, 0u)
      << "a stack scan read a scan set after the grace period that published it had withdrawn it "
         "(its owner frees it then: a use after free)";
  // Once the threads are gone nothing can hold the blob: it must be freed.
  ASSERT_TRUE(scanner.unregister());
  ASSERT_TRUE(holder.unregister());
  Status again = rt->barrier(5000ms);
  EXPECT_TRUE(again.isOk()) << again.toString();
  EXPECT_EQ(rt->stats().blobsFreed, 1u);
  testing::setQuarantineScanSets(false);
}

}  // namespace
}  // namespace patchcall

// Deferred retirement of callbacks: they run after a grace period and never before, share
// grace periods, obey manual mode (poll/barrier), and never run under the text mutex.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "isa.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

int returnsOne() { return 1; }
int returnsTwo() { return 2; }

Options makeOptions(DiagnosticLog& log, bool background) {
  Options o;
  o.backgroundReclaimer = background;
  o.graceDeadline = 5000ms;
  o.diagnosticSink = log.sink();
  return o;
}

TEST(RetireCallback, RunsOnlyAfterAGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/true));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread reader;  // holds every grace period until it starts passing safepoints
  ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());

  std::atomic<bool> ran{false}, readerReleased{false}, ranBeforeRelease{false};
  ASSERT_TRUE(rt->retire([&] {
                  ranBeforeRelease = !readerReleased.load();
                  ran = true;
                }).isOk());
  std::this_thread::sleep_for(150ms);
  EXPECT_FALSE(ran.load()) << "the callback ran while a registered reader had not passed a safepoint";
  EXPECT_EQ(rt->stats().callbacksRun, 0u);
  EXPECT_EQ(rt->stats().callbacksRetired, 1u);

  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  readerReleased = true;
  reader.post([&] { passSafepointsUntil(stopReader); });
  EXPECT_TRUE(waitUntil([&] { return ran.load(); }, 5000ms))
      << "the callback did not run within 5 s of the reader passing safepoints\n" << log.all();
  EXPECT_FALSE(ranBeforeRelease.load());
  // Counted once the callback returned, on the reclaimer's thread: wait for it too.
  EXPECT_TRUE(waitUntil([&] { return rt->stats().callbacksRun == 1; }, 5000ms)) << rt->stats().callbacksRun;
}

TEST(RetireCallback, ThousandRetirementsShareOneGracePeriodInManualMode) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/false));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "reader").isOk());
  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  reader.post([&] { passSafepointsUntil(stopReader); });

  constexpr int kRetires = 1000;
  std::vector<int> runs(kRetires, 0);  // only the barrier's thread runs them
  for (int i = 0; i < kRetires; ++i) ASSERT_TRUE(rt->retire([&runs, i] { ++runs[i]; }).isOk());
  uint64_t gp0 = rt->stats().gracePeriods;
  Status s = rt->barrier(5000ms);
  ASSERT_TRUE(s.isOk()) << s.toString() << "\n" << log.all();
  uint64_t gracePeriods = rt->stats().gracePeriods - gp0;
  EXPECT_LE(gracePeriods, 2u) << kRetires << " retirements needed " << gracePeriods << " grace periods";
  EXPECT_GE(gracePeriods, 1u) << "callbacks ran without a grace period";
  for (int i = 0; i < kRetires; ++i) ASSERT_EQ(runs[i], 1) << "callback " << i << " ran " << runs[i] << " times";
  EXPECT_EQ(rt->stats().callbacksRun, static_cast<uint64_t>(kRetires));
}

TEST(RetireCallback, BackgroundReclaimerBatchesRetirements) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/true));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread reader;  // a grace period lasts up to 500 us, so retirements pile up meanwhile
  ASSERT_TRUE(reader.registerWith(*rt, "reader").isOk());
  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  reader.post([&] { passSafepointsUntil(stopReader, 500us); });

  constexpr int kRetires = 1000;
  auto runs = std::make_unique<std::atomic<int>[]>(kRetires);
  uint64_t gp0 = rt->stats().gracePeriods;
  for (int i = 0; i < kRetires; ++i) ASSERT_TRUE(rt->retire([&runs, i] { runs[i].fetch_add(1); }).isOk());
  Status s = rt->barrier(5000ms);
  ASSERT_TRUE(s.isOk()) << s.toString() << "\n" << log.all();
  uint64_t gracePeriods = rt->stats().gracePeriods - gp0;
  std::printf("[ info ] %d retirements (background reclaimer) took %llu grace periods\n", kRetires,
              static_cast<unsigned long long>(gracePeriods));
  EXPECT_LT(gracePeriods, 100u) << kRetires << " retirements took " << gracePeriods << " grace periods: no batching";
  for (int i = 0; i < kRetires; ++i) ASSERT_EQ(runs[i].load(), 1) << "callback " << i;
  EXPECT_EQ(rt->stats().callbacksRun, static_cast<uint64_t>(kRetires));
}

TEST(RetireCallback, ManualModePollRunsNothingBeforeAGracePeriodAndBarrierRunsAll) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/false));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  int ran = 0;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(rt->retire([&] { ++ran; }).isOk());
  std::this_thread::sleep_for(20ms);  // no thread of the runtime's own would run them
  EXPECT_EQ(ran, 0) << "manual mode ran callbacks without barrier()/poll()";
  {
    TestThread reader;  // holds the grace period poll() starts
    ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());
    EXPECT_EQ(rt->poll(), 0u) << "poll() ran callbacks before their grace period";
    EXPECT_EQ(ran, 0);
    ASSERT_TRUE(reader.unregister());
  }
  // poll() completes the grace period it started (nobody is registered now) and runs them.
  EXPECT_EQ(rt->poll(), 10u);
  EXPECT_EQ(ran, 10);
  EXPECT_EQ(rt->poll(), 0u) << "poll() ran something twice";

  for (int i = 0; i < 5; ++i) ASSERT_TRUE(rt->retire([&] { ++ran; }).isOk());
  Status s = rt->barrier(2000ms);
  ASSERT_TRUE(s.isOk()) << s.toString();
  EXPECT_EQ(ran, 15);
  EXPECT_EQ(rt->stats().callbacksRun, 15u);
}

TEST(RetireCallback, ManualBarrierTimesOutWhileAReaderHoldsTheGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/false));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());
  bool ran = false;
  ASSERT_TRUE(rt->retire([&] { ran = true; }).isOk());
  Status s = rt->barrier(100ms);
  EXPECT_EQ(s.code(), Error::kTimeout) << s.toString();
  EXPECT_NE(s.message().find("held-reader"), std::string::npos) << "the timeout should name the reader: " << s.message();
  EXPECT_FALSE(ran) << "the callback ran although its grace period never completed";
  EXPECT_EQ(rt->poll(), 0u);

  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  reader.post([&] { passSafepointsUntil(stopReader); });
  s = rt->barrier(5000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
  EXPECT_TRUE(ran);
}

// Manual mode: barrier() on the test thread runs the callbacks. Background mode: the
// reclaimer thread does, on its own.
void runCallbacks(Runtime& rt, bool background, const std::atomic<bool>& ran) {
  if (!background) {
    Status s = rt.barrier(5000ms);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  ASSERT_TRUE(waitUntil([&] { return ran.load(); }, 5000ms)) << "the retire callback never ran";
}

// The callback calls back into the update path; under the text mutex that would be an
// Error::kReentrantUpdate (or a deadlock).
void expectCallbacksRunOutsideTheTextMutex(bool background) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, background));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&returnsOne), "retire-updates-me");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  std::atomic<bool> ran{false};
  Status update, create, install;
  ASSERT_TRUE(rt->retire([&] {
                  update = rt->update(*key, reinterpret_cast<const void*>(&returnsTwo)).status();
                  create = rt->createKey(reinterpret_cast<const void*>(&returnsOne)).status();
                  jit::Assembler a(*rt);
                  test::emitRet(a);
                  install = jit::install(a).status();
                  ran = true;
                }).isOk());
  runCallbacks(*rt, background, ran);
  EXPECT_TRUE(update.isOk()) << "update() inside a retire callback: " << update.toString();
  EXPECT_TRUE(create.isOk()) << "createKey() inside a retire callback: " << create.toString();
  EXPECT_TRUE(install.isOk()) << "jit::install() inside a retire callback: " << install.toString();
  Result<const void*> now = rt->target(*key);
  ASSERT_TRUE(now.isOk());
  EXPECT_EQ(now.value(), reinterpret_cast<const void*>(&returnsTwo));
}

TEST(RetireCallback, NeverRunsUnderTheTextMutexInManualMode) { expectCallbacksRunOutsideTheTextMutex(false); }
TEST(RetireCallback, NeverRunsUnderTheTextMutexOnTheReclaimerThread) { expectCallbacksRunOutsideTheTextMutex(true); }

TEST(RetireCallback, ACallbackMayRetireAnotherWhichRunsAfterALaterGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/false));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<int> order;
  Status nested;
  ASSERT_TRUE(rt->retire([&] {
                  order.push_back(1);
                  nested = rt->retire([&] { order.push_back(2); });
                }).isOk());
  uint64_t gp0 = rt->stats().gracePeriods;
  Status s = rt->barrier(5000ms);
  ASSERT_TRUE(s.isOk()) << s.toString();
  EXPECT_TRUE(nested.isOk()) << nested.toString();
  if (order.size() < 2) {  // barrier() covers what was retired before it; the inner one may need another
    s = rt->barrier(5000ms);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  ASSERT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_GE(rt->stats().gracePeriods - gp0, 2u) << "the nested callback ran without a grace period of its own";
}

// --- bad inputs ----------------------------------------------------------------------------

void expectWaitsInsideCallbacksRefused(bool background) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, background));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::atomic<bool> ran{false};
  Status sync, barrier;
  ASSERT_TRUE(rt->retire([&] {
                  sync = rt->synchronize(1000ms);
                  barrier = rt->barrier(1000ms);
                  ran = true;
                }).isOk());
  runCallbacks(*rt, background, ran);
  EXPECT_EQ(sync.code(), Error::kWouldDeadlock) << "synchronize() inside a retire callback: " << sync.toString();
  EXPECT_EQ(barrier.code(), Error::kWouldDeadlock) << "barrier() inside a retire callback: " << barrier.toString();
  // Outside the callback, the same thread may wait again.
  Status after = rt->synchronize(1000ms);
  EXPECT_TRUE(after.isOk()) << after.toString();
}

// The refusal is per runtime: runtime A's callback may wait for runtime B's grace period.
TEST(RetireCallbackErrors, AnotherRuntimesSynchronizeInsideACallbackIsFine) {
  DiagnosticLog log;
  auto a = Runtime::create(makeOptions(log, false));
  auto b = Runtime::create(makeOptions(log, false));
  ASSERT_TRUE(a.isOk() && b.isOk());
  std::atomic<bool> ran{false};
  Status sync, barrier, own;
  ASSERT_TRUE(a->retire([&] {
                  sync = b->synchronize(1000ms);
                  barrier = b->barrier(1000ms);
                  own = a->synchronize(1000ms);
                  ran = true;
                }).isOk());
  runCallbacks(*a, false, ran);
  EXPECT_TRUE(sync.isOk()) << "B.synchronize() inside A's retire callback: " << sync.toString();
  EXPECT_TRUE(barrier.isOk()) << "B.barrier() inside A's retire callback: " << barrier.toString();
  EXPECT_EQ(own.code(), Error::kWouldDeadlock) << "A.synchronize() inside A's own callback: " << own.toString();
}

TEST(RetireCallbackErrors, SynchronizeInsideACallbackRunByBarrierWouldDeadlock) {
  expectWaitsInsideCallbacksRefused(false);
}
TEST(RetireCallbackErrors, SynchronizeInsideACallbackOnTheReclaimerThreadWouldDeadlock) {
  expectWaitsInsideCallbacksRefused(true);
}

TEST(RetireCallbackErrors, EmptyCallbackIsRejected) {
  DiagnosticLog log;
  auto rt = Runtime::create(makeOptions(log, /*background=*/false));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Status s = rt->retire(std::function<void()>());
  EXPECT_EQ(s.code(), Error::kInvalidArgument) << s.toString();
  EXPECT_EQ(rt->stats().callbacksRetired, 0u);
  EXPECT_TRUE(rt->barrier(1000ms).isOk());
}

}  // namespace

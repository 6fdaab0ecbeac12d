// The quiescence API's promises about waiting: barrier() and poll() on a registered thread
// go offline before they wait on anything, every deadline is honoured, barrier() waits for
// exactly what was retired before it, poll() and barrier() inside a retire callback return,
// the polled grace-period API makes progress in manual mode, and the intrusive retire.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <vector>

#include "emulation.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

Options backgroundOptions(DiagnosticLog& log, std::chrono::milliseconds graceDeadline) {
  Options o;
  o.graceDeadline = graceDeadline;
  o.diagnosticSink = log.sink();
  return o;
}

// ---- 1. barrier() on a registered, online thread while the background reclaimer waits ----

TEST(QuiescenceApi, BarrierOnAnOnlineRegisteredThreadGoesOfflineBeforeItWaits) {
  DiagnosticLog log;
  auto rt = Runtime::create(backgroundOptions(log, 3000ms));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<ThreadScope> self = rt->registerThread("barrier-caller");  // online, no safepoints
  ASSERT_TRUE(self.isOk());
  std::atomic<bool> ran{false};
  ASSERT_TRUE(rt->retire([&] { ran = true; }).isOk());
  // The reclaimer's grace period is in flight and waits for this thread.
  ASSERT_TRUE(waitUntil([&] { return *rt->safepointFlag() != 0; }, 2000ms)) << "no grace period started";
  auto t0 = Clock::now();
  Status s = rt->barrier(1000ms);
  long long ms = msSince(t0);
  EXPECT_TRUE(s.isOk()) << s.toString();
  EXPECT_LT(ms, 1000) << "barrier(1000 ms) took " << ms << " ms (it waited for the background pass)";
  EXPECT_TRUE(ran.load());
  EXPECT_TRUE(log.matching("barrier-caller").empty()) << "the caller was reported as stuck:\n" << log.all();
  self->reset();
}

TEST(QuiescenceApi, BarrierDeadlineIsHonouredWhileTheBackgroundPassWaitsForAnotherThread) {
  DiagnosticLog log;
  auto rt = Runtime::create(backgroundOptions(log, 5000ms));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread stuck;  // registered, never at a safepoint: the background pass waits 5 s for it
  ASSERT_TRUE(stuck.registerWith(*rt, "stuck-reader").isOk());
  Result<ThreadScope> self = rt->registerThread("barrier-caller");
  ASSERT_TRUE(self.isOk());
  ASSERT_TRUE(rt->retire([] {}).isOk());
  ASSERT_TRUE(waitUntil([&] { return *rt->safepointFlag() != 0; }, 2000ms)) << "no grace period started";
  auto t0 = Clock::now();
  Status s = rt->barrier(300ms);
  long long ms = msSince(t0);
  EXPECT_EQ(s.code(), Error::kTimeout) << s.toString();
  EXPECT_LT(ms, 1000) << "barrier(300 ms) took " << ms << " ms";
  EXPECT_NE(s.message().find("stuck-reader"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("barrier-caller"), std::string::npos) << s.message();
  EXPECT_TRUE(log.matching("barrier-caller").empty()) << log.all();
  self->reset();
  ASSERT_TRUE(stuck.unregister());
}

// ---- 2. poll() and barrier() inside a retire callback never hang ----------------------------

void reenterFromCallbacks(bool background) {
  alarm(10);  // a deadlock fails the test instead of hanging it
  Options o;
  o.backgroundReclaimer = background;
  o.graceDeadline = 2000ms;
  o.diagnosticSink = [](const std::string&) {};
  {
    Result<Runtime> rt = Runtime::create(o);
    if (!rt) _exit(10);
    std::atomic<int> ran{0};
    size_t polled = 99;
    Status barrier;
    bool elapsed = false;
    if (!rt->retire([&] {
               polled = rt->poll();
               barrier = rt->barrier(100ms);
               GracePeriodCookie c = rt->startGracePeriod();
               elapsed = rt->gracePeriodElapsed(c);
               (void)rt->retire([&] { ran.fetch_add(1); });  // runs after a later grace period
               ran.fetch_add(1);
             })
             .isOk()) {
      _exit(11);
    }
    if (!background && !rt->barrier(2000ms).isOk()) _exit(12);
    if (!waitUntil([&] { return ran.load() >= 1; }, 5000ms)) _exit(13);
    if (polled != 0) _exit(14);
    if (barrier.code() != Error::kWouldDeadlock) _exit(15);
    (void)elapsed;  // either answer is fine; it must return
    if (!background) {
      while (ran.load() < 2) (void)rt->poll();  // the nested retirement (bounded by the alarm)
    }
  }  // ~Runtime joins the reclaimer thread
  std::fprintf(stderr, "every re-entry returned\n");
  _exit(0);
}

TEST(QuiescenceApiDeathTest, PollAndBarrierInsideARetireCallbackReturnInManualMode) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(reenterFromCallbacks(false), ::testing::ExitedWithCode(0), "every re-entry returned");
}

TEST(QuiescenceApiDeathTest, PollAndBarrierInsideARetireCallbackReturnInBackgroundMode) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(reenterFromCallbacks(true), ::testing::ExitedWithCode(0), "every re-entry returned");
}

// ---- 3. barrier() waits for what was retired before it, and says why it timed out ----------

TEST(QuiescenceApi, BarrierWaitsOnlyForWhatWasRetiredBeforeItWhileAnotherThreadKeepsRetiring) {
  DiagnosticLog log;
  std::atomic<bool> stop{false};  // before the runtime: callbacks still queued read these in ~Runtime
  std::atomic<int> earlierRan{0};
  std::atomic<bool> barrierCalled{false};
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  constexpr int kEarlier = 100;
  for (int i = 0; i < kEarlier; ++i) ASSERT_TRUE(rt->retire([&] { earlierRan.fetch_add(1); }).isOk());
  std::atomic<uint64_t> retired{0};
  std::thread retirer([&] {
    // Callbacks retired after barrier() began are slower to run than to retire, so the queue
    // never drains; those before it are cheap (barrier must run every one of them).
    while (!stop.load() && retired.load() < 300000) {  // bounded memory if barrier never returns
      bool late = barrierCalled.load();
      (void)rt->retire([&stop, late] {
        auto until = Clock::now() + 50us;
        while (late && !stop.load() && Clock::now() < until) {
        }
      });
      retired.fetch_add(1);
    }
  });
  OnExit stopOnExit([&] {
    stop = true;
    retirer.join();
  });
  ASSERT_TRUE(waitUntil([&] { return retired.load() > 1000; }));
  barrierCalled = true;  // the few retired between here and the call are slow and waited for
  auto t0 = Clock::now();
  Status s = rt->barrier(2000ms);
  long long ms = msSince(t0);
  EXPECT_TRUE(s.isOk()) << s.toString() << " after " << ms << " ms";
  EXPECT_EQ(earlierRan.load(), kEarlier);
  EXPECT_LT(ms, 2000);
}

TEST(QuiescenceApi, BarrierTimeoutNamesPendingCallbacksAndTheThreadNotBlobs) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());
  ASSERT_TRUE(rt->retire([] {}).isOk());
  Status s = rt->barrier(100ms);
  ASSERT_EQ(s.code(), Error::kTimeout) << s.toString();
  EXPECT_NE(s.message().find("callback"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("held-reader"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("blob"), std::string::npos) << "no blob exists: " << s.message();
  ASSERT_TRUE(reader.unregister());
  EXPECT_TRUE(rt->barrier(2000ms).isOk());
}

// ---- 4. polled grace periods ----------------------------------------------------------------

TEST(QuiescenceApi, CookiesAreMonotonicAndTheDefaultCookieHasElapsed) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk());
  EXPECT_TRUE(rt->gracePeriodElapsed(GracePeriodCookie{}));
  GracePeriodCookie a = rt->gracePeriodState(), b = rt->gracePeriodState();
  EXPECT_LE(a, b);
  ASSERT_TRUE(rt->synchronize(2000ms).isOk());
  EXPECT_TRUE(rt->gracePeriodElapsed(a));
  GracePeriodCookie c = rt->startGracePeriod();
  EXPECT_LT(a, c);
  EXPECT_TRUE(rt->gracePeriodElapsed(c)) << "no registered thread: the started grace period completes at once";
  EXPECT_TRUE(rt->gracePeriodElapsed(c)) << "an elapsed cookie stays elapsed";
}

TEST(QuiescenceApi, ManualModeStartAndPollCompleteAGracePeriodWithoutBlocking) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk());
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "reader").isOk());
  uint64_t gp0 = rt->stats().gracePeriods;
  auto t0 = Clock::now();
  GracePeriodCookie c = rt->startGracePeriod();
  EXPECT_FALSE(rt->gracePeriodElapsed(c)) << "the reader has not passed a safepoint yet";
  EXPECT_LT(msSince(t0), 100) << "start/elapsed blocked";
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(rt->gracePeriodElapsed(c)) << "elapsed while a registered reader held it";

  std::atomic<bool> stop{false};
  OnExit stopOnExit([&] { stop = true; });
  reader.post([&] { passSafepointsUntil(stop); });
  EXPECT_TRUE(waitUntil([&] { return rt->gracePeriodElapsed(c); })) << log.all();
  EXPECT_GT(rt->stats().gracePeriods, gp0);
}

TEST(QuiescenceApi, BackgroundReclaimerCompletesAStartedGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(backgroundOptions(log, 5000ms));
  ASSERT_TRUE(rt.isOk());
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "reader").isOk());
  std::this_thread::sleep_for(20ms);  // the reclaimer thread is asleep: nothing queued
  uint64_t gp0 = rt->stats().gracePeriods;
  GracePeriodCookie c = rt->startGracePeriod();  // the reader holds it: still in flight
  std::atomic<bool> stop{false};
  OnExit stopOnExit([&] { stop = true; });
  reader.post([&] { passSafepointsUntil(stop); });
  // Nobody polls or asks gracePeriodElapsed (which would step it): the reclaimer thread must.
  EXPECT_TRUE(waitUntil([&] { return rt->stats().gracePeriods > gp0; })) << log.all();
  EXPECT_TRUE(rt->gracePeriodElapsed(c));
}

TEST(QuiescenceApi, PollAloneRunsCallbacksInManualMode) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk());
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "reader").isOk());
  std::atomic<bool> stop{false};
  OnExit stopOnExit([&] { stop = true; });
  reader.post([&] { passSafepointsUntil(stop); });
  constexpr int kCallbacks = 1000;
  int ran = 0;
  size_t polled = 0;
  for (int i = 0; i < kCallbacks; ++i) {
    ASSERT_TRUE(rt->retire([&] { ++ran; }).isOk());
    polled += rt->poll();
  }
  EXPECT_TRUE(waitUntil([&] {
    polled += rt->poll();
    return ran == kCallbacks;
  })) << ran << " of " << kCallbacks << " callbacks ran through poll() alone\n" << log.all();
  EXPECT_EQ(polled, static_cast<size_t>(kCallbacks));
}

// ---- 5. intrusive retire --------------------------------------------------------------------

struct Tracked : RetireNode {
  int id = 0;
  std::vector<int>* order = nullptr;
};

void recordTracked(RetireNode* node) {
  auto* t = static_cast<Tracked*>(node);
  t->order->push_back(t->id);
}

TEST(QuiescenceApi, IntrusiveRetireRunsAfterAGracePeriodInOneQueueWithCallbacks) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk());
  std::vector<int> order;
  std::vector<Tracked> nodes(50);
  {
    TestThread reader;  // holds the grace period while everything is retired
    ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());
    for (int i = 0; i < 100; ++i) {
      if (i % 2 == 0) {
        nodes[i / 2].id = i;
        nodes[i / 2].order = &order;
        ASSERT_TRUE(rt->retire(&nodes[i / 2], &recordTracked).isOk());
      } else {
        ASSERT_TRUE(rt->retire([&order, i] { order.push_back(i); }).isOk());
      }
    }
    EXPECT_EQ(rt->poll(), 0u);
    EXPECT_TRUE(order.empty()) << "a node ran before its grace period";
    ASSERT_TRUE(reader.unregister());
  }
  ASSERT_TRUE(rt->barrier(2000ms).isOk());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i) << "retirement order was not kept";
  EXPECT_EQ(rt->stats().callbacksRun, 100u);
  EXPECT_EQ(rt->retire(nullptr, &recordTracked).code(), Error::kInvalidArgument);
  Tracked t;
  EXPECT_EQ(rt->retire(&t, nullptr).code(), Error::kInvalidArgument);
}

// ---- 6. checked mode: unregistered threads are reported once each --------------------------

TEST(QuiescenceApi, CheckedModeReportsAnUnregisteredThreadOncePerThread) {
  DiagnosticLog log, quietLog;
  Options o = manualOptions(log);
  o.reportUnregisteredThreads = true;
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk());
  auto quiet = Runtime::create(manualOptions(quietLog));  // not checked: never reports
  ASSERT_TRUE(quiet.isOk());
  pid_t first = 0, second = 0;
  std::thread([&] {
    first = currentTid();
    for (int i = 0; i < 3; ++i) safepoint();
    OfflineScope offline;
    (void)goOnline();
  }).join();
  std::thread([&] {
    second = currentTid();
    { OfflineScope offline; }  // an OfflineScope first: reported too
    safepoint();
  }).join();
  std::thread([&] {
    Result<ThreadScope> scope = rt->registerThread("registered");
    ASSERT_TRUE(scope.isOk());
    safepoint();
    OfflineScope offline;
  }).join();
  std::vector<std::string> reports = log.matching("not registered");
  ASSERT_EQ(reports.size(), 2u) << log.all();
  EXPECT_NE(reports[0].find("safepoint()"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("tid " + std::to_string(first)), std::string::npos) << reports[0];
  EXPECT_NE(reports[1].find("OfflineScope"), std::string::npos) << reports[1];
  EXPECT_NE(reports[1].find("tid " + std::to_string(second)), std::string::npos) << reports[1];
  EXPECT_TRUE(quietLog.matching("not registered").empty()) << quietLog.all();
}

TEST(QuiescenceApi, WithoutCheckedModeUnregisteredThreadsAreNotReported) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk());
  std::thread([] {
    safepoint();
    OfflineScope offline;
  }).join();
  EXPECT_TRUE(log.matching("not registered").empty()) << log.all();
}

}  // namespace

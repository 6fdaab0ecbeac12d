// Grace-period semantics of the QSBR domain: which threads hold up synchronize() and which
// never do, sharing of grace periods between callers, and the stalled-thread diagnostic.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <vector>

#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

// Manual mode: no reclaimer thread runs grace periods behind the test's back.
Options manualOptions(DiagnosticLog* log = nullptr) {
  Options o;
  o.backgroundReclaimer = false;
  o.graceDeadline = 5000ms;
  if (log != nullptr) o.diagnosticSink = log->sink();
  return o;
}

TEST(QuiescenceGracePeriod, RegisteredReaderHoldsUpSynchronizeUntilItPassesASafepoint) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  EXPECT_EQ(*rt->safepointFlag(), 0) << "the poll flag is armed although no grace period runs";
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());

  // Registered, online, no safepoint yet: it may hold references, so the grace period waits.
  Status early = rt->synchronize(50ms);
  EXPECT_EQ(early.code(), Error::kTimeout) << early.toString();

  std::atomic<bool> done{false};
  Status result(Error::kTimeout, "synchronize never returned");
  std::jthread syncer([&] {
    result = rt->synchronize(5000ms);
    done = true;
  });
  EXPECT_TRUE(waitUntil([&] { return *rt->safepointFlag() != 0; }, 2000ms))
      << "the JIT poll flag was never armed while synchronize() waited";
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(done.load()) << "synchronize() returned while the reader had not passed a safepoint: "
                            << result.toString();

  // Exactly one safepoint, taken while the grace period is running, must end it.
  EXPECT_TRUE(reader.run([] { safepoint(); }));
  EXPECT_TRUE(waitUntil([&] { return done.load(); }, 3000ms))
      << "synchronize() still waiting 3 s after the reader passed a safepoint";
  syncer.join();
  EXPECT_TRUE(result.isOk()) << result.toString() << "\n" << log.all();
  EXPECT_EQ(*rt->safepointFlag(), 0) << "the poll flag stayed armed after the grace period";
}

TEST(QuiescenceGracePeriod, OfflineThreadNeverHoldsUpAGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread sleeper;
  ASSERT_TRUE(sleeper.registerWith(*rt, "offline-sleeper").isOk());

  // goOffline(), then block on the TestThread's condition variable.
  Status off;
  ASSERT_TRUE(sleeper.run([&] { off = goOffline(); }));
  ASSERT_TRUE(off.isOk()) << off.toString();
  for (int i = 0; i < 20; ++i) {
    auto t0 = Clock::now();
    Status s = rt->synchronize(2000ms);
    ASSERT_TRUE(s.isOk()) << "round " << i << ": " << s.toString() << "\n" << log.all();
    EXPECT_LT(msSince(t0), 1000) << "an offline thread delayed the grace period";
  }

  // Back online without a safepoint: its frames are live again, so it holds grace periods...
  Status on;
  ASSERT_TRUE(sleeper.run([&] { on = goOnline(); }));
  ASSERT_TRUE(on.isOk()) << on.toString();
  Status held = rt->synchronize(50ms);
  EXPECT_EQ(held.code(), Error::kTimeout) << "a thread back online counted as quiescent before its "
                                          << "next safepoint: " << held.toString();
  // ...until it passes a safepoint during the grace period.
  std::atomic<bool> stopPassing{false};
  OnExit stopPassingOnExit([&] { stopPassing = true; });
  sleeper.post([&] { passSafepointsUntil(stopPassing); });
  Status s = rt->synchronize(2000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
  stopPassing = true;
  ASSERT_TRUE(sleeper.waitIdle());

  // OfflineScope around a blocking wait inside a task.
  std::atomic<bool> inside{false}, release{false};
  OnExit releaseOnExit([&] { release = true; });
  sleeper.post([&] {
    OfflineScope offline;
    inside = true;
    waitUntil([&] { return release.load(); }, 10000ms);
  });
  ASSERT_TRUE(waitUntil([&] { return inside.load(); }));
  Status blocked = rt->synchronize(2000ms);
  EXPECT_TRUE(blocked.isOk()) << "a thread blocked inside an OfflineScope held up the grace period: "
                              << blocked.toString();
  release = true;
  EXPECT_TRUE(sleeper.waitIdle());
}

// A thread that registers while a grace period runs holds nothing retired before it: the
// running grace period must not wait for it. A held thread that unregisters stops holding.
TEST(QuiescenceGracePeriod, RegisteringAndUnregisteringWhileAGracePeriodWaits) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread held, leaver, latecomer;
  ASSERT_TRUE(held.registerWith(*rt, "held").isOk());
  ASSERT_TRUE(leaver.registerWith(*rt, "leaver").isOk());

  std::atomic<bool> done{false};
  Status result(Error::kTimeout, "synchronize never returned");
  std::jthread syncer([&] {
    result = rt->synchronize(5000ms);
    done = true;
  });
  ASSERT_TRUE(waitUntil([&] { return *rt->safepointFlag() != 0; }, 2000ms)) << "no grace period started";
  // Joins mid grace period and then never passes a safepoint.
  EXPECT_TRUE(latecomer.registerWith(*rt, "latecomer").isOk());
  // Leaves mid grace period without passing a safepoint.
  EXPECT_TRUE(leaver.unregister());
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(done.load()) << "returned although 'held' never passed a safepoint: " << result.toString();
  EXPECT_TRUE(held.run([] { safepoint(); }));
  EXPECT_TRUE(waitUntil([&] { return done.load(); }, 3000ms));
  syncer.join();
  EXPECT_TRUE(result.isOk()) << "the grace period waited for a thread that registered after it began or "
                             << "one that unregistered: " << result.toString();
  // The latecomer is tracked from the next grace period on.
  Status next = rt->synchronize(50ms);
  EXPECT_EQ(next.code(), Error::kTimeout) << next.toString();
  EXPECT_NE(next.message().find("latecomer"), std::string::npos) << next.message();
}

TEST(QuiescenceGracePeriod, ThreadsRegisteringAndUnregisteringDuringGracePeriods) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  constexpr int kChurners = 4;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> registrations{0}, failures{0};
  std::vector<std::jthread> churners;
  OnExit stopOnExit([&] { stop = true; });  // before the jthreads join, even on ASSERT failure
  for (int c = 0; c < kChurners; ++c) {
    churners.emplace_back([&, c] {
      for (int i = 0; !stop.load() && i < 200000; ++i) {
        Result<ThreadScope> scope = rt->registerThread("churn-" + std::to_string(c));
        if (!scope) {
          failures.fetch_add(1);
          continue;
        }
        registrations.fetch_add(1);
        switch (i % 3) {  // leave in different states: after a safepoint, offline, or fresh
          case 0: safepoint(); break;
          case 1: (void)goOffline(); break;
          default: break;
        }
        if (i % 8 == 0) std::this_thread::yield();
      }  // the ThreadScope unregisters at the end of each iteration
    });
  }
  auto t0 = Clock::now();
  int rounds = 0;
  while (msSince(t0) < 400 || rounds < 20) {
    Status s = rt->synchronize(5000ms);
    ASSERT_TRUE(s.isOk()) << "round " << rounds << " with " << registrations.load()
                          << " registrations so far: " << s.toString();
    ++rounds;
    if (rounds > 100000) break;
  }
  stop = true;
  churners.clear();  // joins
  EXPECT_EQ(failures.load(), 0u) << "registerThread failed during churn\n" << log.all();
  EXPECT_GT(registrations.load(), 100u) << "churn threads barely ran; the test proved little";
  EXPECT_GE(rt->stats().gracePeriods, static_cast<uint64_t>(rounds));
  Status after = rt->synchronize(1000ms);
  EXPECT_TRUE(after.isOk()) << "synchronize() after the churn: " << after.toString();
}

// One grace period serves every caller that arrived before it began: a caller waits for at
// most the grace period already running plus the next one, never a long series of them.
static long involuntarySwitches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nivcsw;
}

// Nanoseconds this thread has spent runnable but waiting for a CPU (/proc/thread-self/schedstat,
// its second field), or -1 where the kernel (or an emulator) does not say.
static long long runQueueDelayNs() {
  long long cpu = 0, delay = -1;
  if (FILE* f = std::fopen("/proc/thread-self/schedstat", "re")) {
    if (std::fscanf(f, "%lld %lld", &cpu, &delay) != 2) delay = -1;
    std::fclose(f);
  }
  return delay;
}

TEST(QuiescenceGracePeriod, ConcurrentSynchronizeCallersShareGracePeriods) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  // A live reader that passes a safepoint every 500 us, so every grace period takes a while.
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "slow-reader").isOk());
  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  reader.post([&] { passSafepointsUntil(stopReader, 500us); });

  constexpr int kCallers = 8, kCallsEach = 25;
  constexpr uint64_t kCalls = kCallers * kCallsEach;
  uint64_t gp0 = rt->stats().gracePeriods;
  std::atomic<int> failures{0}, longWaits{0}, preempted{0};
  std::atomic<uint64_t> spanHistogram[8] = {};  // grace periods completed during one call
  std::atomic<long long> worstUs{0};
  std::string firstFailure;
  std::mutex failureMutex;
  {
    std::vector<std::jthread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&] {
        for (int i = 0; i < kCallsEach; ++i) {
          uint64_t before = rt->stats().gracePeriods;
          long involuntary0 = involuntarySwitches();
          long long delay0 = runQueueDelayNs();
          auto t0 = Clock::now();
          Status s = rt->synchronize(5000ms);
          auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
          uint64_t span = rt->stats().gracePeriods - before;
          spanHistogram[std::min<uint64_t>(span, 7)].fetch_add(1);
          // A caller the scheduler preempted (involuntarily), or woke and then left waiting for
          // a CPU longer than one reader period, may see later grace periods complete before it
          // runs again; only one that kept its CPU or slept counts (a lost wakeup sleeps).
          long long delay1 = runQueueDelayNs();
          bool waitedForCpu = delay0 >= 0 && delay1 >= 0 && delay1 - delay0 > 500'000;
          bool wasPreempted = involuntarySwitches() != involuntary0 || waitedForCpu;
          if (wasPreempted) preempted.fetch_add(1);
          if (span > 3 && !wasPreempted) longWaits.fetch_add(1);
          for (long long w = worstUs.load(); us > w && !worstUs.compare_exchange_weak(w, us);) {}
          if (!s.isOk() && failures.fetch_add(1) == 0) {
            std::lock_guard<std::mutex> lock(failureMutex);
            firstFailure = s.toString();
          }
        }
      });
    }
  }
  uint64_t gracePeriods = rt->stats().gracePeriods - gp0;
  std::string histogram;
  for (int i = 0; i < 8; ++i) {
    histogram += " " + std::to_string(i) + (i == 7 ? "+" : "") + ":" + std::to_string(spanHistogram[i].load());
  }
  std::printf("[ info ] %llu synchronize() calls from %d threads: %llu grace periods, worst call %lld us,"
              " grace periods completed per call:%s; %d calls preempted\n",
              static_cast<unsigned long long>(kCalls), kCallers, static_cast<unsigned long long>(gracePeriods),
              worstUs.load(), histogram.c_str(), preempted.load());
  EXPECT_EQ(failures.load(), 0) << firstFailure;
  EXPECT_LT(gracePeriods, kCalls) << kCalls << " concurrent synchronize() calls ran " << gracePeriods
                                  << " grace periods: no sharing at all";
  EXPECT_GE(gracePeriods, static_cast<uint64_t>(kCallsEach)) << "a caller returned without a grace period";
  // Calls that were not preempted: at most 5% may see > 3 (a wakeup can still come late).
  EXPECT_LE(longWaits.load(), static_cast<int>(kCalls / 20))
      << longWaits.load() << " of " << kCalls << " calls waited while more than 3 grace periods completed "
      << "(histogram:" << histogram << "; worst " << worstUs.load() << " us): a caller whose grace "
      << "period is over should return, not wait behind the next ones";
}

TEST(QuiescenceGracePeriod, SynchronizeFromUnregisteredOnlineAndOfflineCallers) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  // A live reader, so each grace period really waits for someone.
  TestThread reader;
  ASSERT_TRUE(reader.registerWith(*rt, "live-reader").isOk());
  std::atomic<bool> stopReader{false};
  OnExit stopOnExit([&] { stopReader = true; });
  reader.post([&] { passSafepointsUntil(stopReader); });

  // Unregistered caller (the test thread).
  ASSERT_FALSE(isThreadRegistered());
  Status s = rt->synchronize(3000ms);
  EXPECT_TRUE(s.isOk()) << "unregistered caller: " << s.toString();

  // Registered, online caller: it is quiescent while it waits, and online again afterwards.
  TestThread caller;
  ASSERT_TRUE(caller.registerWith(*rt, "online-caller").isOk());
  Status online, stateAfter;
  ASSERT_TRUE(caller.run([&] {
    online = rt->synchronize(3000ms);
    stateAfter = goOnline();  // must fail: the caller is still online
  }));
  EXPECT_TRUE(online.isOk()) << "registered online caller deadlocked on itself: " << online.toString();
  EXPECT_EQ(stateAfter.code(), Error::kInvalidArgument)
      << "synchronize() left the caller offline: " << stateAfter.toString();

  // Registered, offline caller: stays offline.
  Status offline, off, stillOffline, back;
  ASSERT_TRUE(caller.run([&] {
    off = goOffline();
    offline = rt->synchronize(3000ms);
    stillOffline = goOffline();  // must fail: already offline
    back = goOnline();
  }));
  EXPECT_TRUE(off.isOk()) << off.toString();
  EXPECT_TRUE(offline.isOk()) << "offline caller: " << offline.toString();
  EXPECT_EQ(stillOffline.code(), Error::kInvalidArgument) << "synchronize() brought an offline caller online";
  EXPECT_TRUE(back.isOk()) << back.toString();
}

// Matches the "<name>' (tid <tid>) has not passed a safepoint for <ms> ms" part of a diagnostic.
void expectNamesStuckThread(const std::string& text, const std::string& name, pid_t tid,
                            long long minMs, const char* where) {
  std::regex re("'" + name + "' \\(tid " + std::to_string(tid) + "\\)[^\\n]*?([0-9]+) ms");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, re)) << where << " does not name thread '" << name << "' (tid "
                                              << tid << ") with a duration: \"" << text << "\"";
  long long ms = std::stoll(m[1].str());
  EXPECT_GE(ms, minMs) << where << " reports a stall shorter than the deadline: \"" << text << "\"";
  EXPECT_LT(ms, 10000) << where << " reports an implausible stall: \"" << text << "\"";
}

TEST(QuiescenceStall, StalledThreadTimesOutAndTheDiagnosticNamesIt) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread stuck, healthy;
  ASSERT_TRUE(stuck.registerWith(*rt, "stuck-worker").isOk());
  ASSERT_TRUE(healthy.registerWith(*rt, "healthy-worker").isOk());
  std::atomic<bool> stopHealthy{false};
  OnExit stopOnExit([&] { stopHealthy = true; });
  healthy.post([&] { passSafepointsUntil(stopHealthy); });

  auto t0 = Clock::now();
  Status s = rt->synchronize(100ms);
  long long elapsed = msSince(t0);
  ASSERT_EQ(s.code(), Error::kTimeout) << s.toString();
  EXPECT_GE(elapsed, 95) << "synchronize(100ms) gave up early";
  EXPECT_LT(elapsed, 2000) << "synchronize(100ms) overran its deadline";
  expectNamesStuckThread(s.message(), "stuck-worker", stuck.tid(), 90, "the Status message");
  EXPECT_EQ(s.message().find("healthy-worker"), std::string::npos)
      << "a thread that passes safepoints was reported as stuck: " << s.message();

  std::vector<std::string> diags = log.matching("stuck-worker");
  ASSERT_FALSE(diags.empty()) << "nothing reached Options::diagnosticSink; got:\n" << log.all();
  expectNamesStuckThread(diags.front(), "stuck-worker", stuck.tid(), 90, "the diagnostic");

  // The runtime is usable afterwards: once the thread passes safepoints again, grace periods end.
  std::atomic<bool> stopStuck{false};
  OnExit stopStuckOnExit([&] { stopStuck = true; });
  stuck.post([&] { passSafepointsUntil(stopStuck); });
  Status after = rt->synchronize(2000ms);
  EXPECT_TRUE(after.isOk()) << after.toString();
}

TEST(QuiescenceStall, EveryStalledThreadIsNamedEvenWithoutARegistrationName) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(&log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread named, unnamed;
  ASSERT_TRUE(named.registerWith(*rt, "parser-7").isOk());
  ASSERT_TRUE(unnamed.registerWith(*rt, "").isOk());
  Status s = rt->synchronize(100ms);
  ASSERT_EQ(s.code(), Error::kTimeout) << s.toString();
  expectNamesStuckThread(s.message(), "parser-7", named.tid(), 90, "the Status message");
  // An unnamed thread is still identified by its tid.
  EXPECT_NE(s.message().find("(tid " + std::to_string(unnamed.tid()) + ")"), std::string::npos)
      << "the unnamed stuck thread (tid " << unnamed.tid() << ") is missing: " << s.message();
}

}  // namespace

// Bad inputs to the thread side of the quiescence domain: every misuse is an error value and
// the runtime stays usable afterwards.
#include <gtest/gtest.h>

#include "patchcall/runtime.h"
#include "quiescence_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define PATCHCALL_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define PATCHCALL_LSAN 1
#endif
#endif

using namespace patchcall;
using namespace patchcall::qtest;

namespace {


TEST(QuiescenceErrors, OfflineAndOnlineNeedARegisteredThread) {
  TestThread t;  // never registered
  Status off, on;
  bool registered = true;
  ASSERT_TRUE(t.run([&] {
    registered = isThreadRegistered();
    off = goOffline();
    on = goOnline();
    { OfflineScope scope; }  // a no-op here, must not crash
    safepoint();             // likewise
  }));
  EXPECT_FALSE(registered);
  EXPECT_EQ(off.code(), Error::kNotRegistered) << off.toString();
  EXPECT_EQ(on.code(), Error::kNotRegistered) << on.toString();
}

TEST(QuiescenceErrors, DoubleOfflineAndDoubleOnlineAreInvalid) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread t;
  ASSERT_TRUE(t.registerWith(*rt, "toggler").isOk());
  Status online2, off1, off2, on1;
  ASSERT_TRUE(t.run([&] {
    online2 = goOnline();  // a fresh registration is online
    off1 = goOffline();
    off2 = goOffline();
    on1 = goOnline();
  }));
  EXPECT_EQ(online2.code(), Error::kInvalidArgument) << online2.toString();
  EXPECT_TRUE(off1.isOk()) << off1.toString();
  EXPECT_EQ(off2.code(), Error::kInvalidArgument) << off2.toString();
  EXPECT_NE(off2.message().find("toggler"), std::string::npos) << "the error should name the thread: " << off2.message();
  EXPECT_TRUE(on1.isOk()) << on1.toString();
  // The failed calls changed nothing: the thread is online and holds grace periods until a safepoint.
  EXPECT_EQ(rt->synchronize(50ms).code(), Error::kTimeout);
  Status off3;
  ASSERT_TRUE(t.run([&] { off3 = goOffline(); }));
  ASSERT_TRUE(off3.isOk()) << off3.toString();
  Status s = rt->synchronize(2000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
}

TEST(QuiescenceErrors, RegisteringTheSameThreadTwiceIsInvalid) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  auto other = Runtime::create(manualOptions(log));
  ASSERT_TRUE(other.isOk()) << other.status().toString();
  Status first, again, elsewhere, afterReset;
  TestThread t;
  ASSERT_TRUE(t.run([&] {
    Result<ThreadScope> a = rt->registerThread("twice");
    first = a.status();
    Result<ThreadScope> b = rt->registerThread("twice");
    again = b.status();
    Result<ThreadScope> c = other->registerThread("twice");  // one runtime at a time
    elsewhere = c.status();
    if (a) a->reset();
    Result<ThreadScope> d = other->registerThread("twice");
    afterReset = d.status();
  }));
  EXPECT_TRUE(first.isOk()) << first.toString();
  EXPECT_EQ(again.code(), Error::kInvalidArgument) << again.toString();
  EXPECT_EQ(elsewhere.code(), Error::kInvalidArgument) << elsewhere.toString();
  EXPECT_TRUE(afterReset.isOk()) << "registration after reset(): " << afterReset.toString();
  // The failed registrations left no phantom thread behind to hold up grace periods.
  Status s = rt->synchronize(1000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
}

TEST(QuiescenceErrors, TooManyThreadsIsAnErrorAndTheRuntimeStaysUsable) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log, /*maxThreads=*/2));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  TestThread a, b, c;
  ASSERT_TRUE(a.registerWith(*rt, "first").isOk());
  ASSERT_TRUE(b.registerWith(*rt, "second").isOk());
  Status third = c.registerWith(*rt, "third");
  EXPECT_EQ(third.code(), Error::kTooManyThreads) << third.toString();
  EXPECT_NE(third.message().find("maxThreads"), std::string::npos) << third.message();

  // The rejected thread is not registered and cannot hold up a grace period.
  bool registered = true;
  ASSERT_TRUE(c.run([&] { registered = isThreadRegistered(); }));
  EXPECT_FALSE(registered);
  ASSERT_TRUE(a.run([] { (void)goOffline(); }));
  ASSERT_TRUE(b.run([] { safepoint(); }));
  std::atomic<bool> stopB{false};
  OnExit stopOnExit([&] { stopB = true; });
  b.post([&] { passSafepointsUntil(stopB); });
  Status s = rt->synchronize(2000ms);
  EXPECT_TRUE(s.isOk()) << s.toString() << "\n" << log.all();

  // A slot freed by unregistering can be taken again.
  ASSERT_TRUE(a.unregister());
  Status retry = c.registerWith(*rt, "third");
  EXPECT_TRUE(retry.isOk()) << retry.toString();
  ASSERT_TRUE(c.run([] { (void)goOffline(); }));
  s = rt->synchronize(2000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
}

// A runtime destroyed while a thread is registered leaks its 8-byte grace-period counter on
// purpose (that thread's inline safepoint() may still read it): hide it from LeakSanitizer.
Result<Runtime> createIgnoringLeaks(const Options& options) {
#ifdef PATCHCALL_LSAN
  __lsan::ScopedDisabler ignoreAllocations;
#endif
  return Runtime::create(options);
}

TEST(QuiescenceErrors, RuntimeDestroyedWhileAThreadIsRegistered) {
  DiagnosticLog log;
  TestThread t;
  {
    auto rt = createIgnoringLeaks(manualOptions(log));
    ASSERT_TRUE(rt.isOk()) << rt.status().toString();
    ASSERT_TRUE(t.registerWith(*rt, "outlives-runtime").isOk());
  }  // destroyed with the thread still registered
  EXPECT_FALSE(log.matching("outlives-runtime").empty())
      << "no diagnostic about the thread still registered at destruction; got:\n" << log.all();
  Status off;
  ASSERT_TRUE(t.run([&] {
    safepoint();  // must not touch freed memory
    off = goOffline();
  }));
  EXPECT_EQ(off.code(), Error::kNotRegistered) << off.toString();
  ASSERT_TRUE(t.unregister());  // the orphaned ThreadScope unregisters as a no-op

  // The thread can join a new runtime.
  auto fresh = Runtime::create(manualOptions(log));
  ASSERT_TRUE(fresh.isOk()) << fresh.status().toString();
  Status again = t.registerWith(*fresh, "outlives-runtime");
  EXPECT_TRUE(again.isOk()) << again.toString();
  EXPECT_EQ(fresh->synchronize(50ms).code(), Error::kTimeout) << "the re-registered thread is not tracked";
  ASSERT_TRUE(t.run([] { (void)goOffline(); }));
  Status s = fresh->synchronize(2000ms);
  EXPECT_TRUE(s.isOk()) << s.toString();
  EXPECT_TRUE(t.unregister());
}

}  // namespace

namespace {

// now() + milliseconds::max() overflows: the largest deadline must mean "wait", not "time
// out at once with a 0 ms diagnostic".
TEST(QuiescenceDeadlines, LargestDeadlineWaitsForTheGracePeriodInsteadOfTimingOut) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::atomic<bool> stop{false}, registered{false};
  std::thread reader([&] {
    Result<ThreadScope> s = rt->registerThread("slow-reader");
    registered = true;
    passSafepointsUntil(stop, 2ms);  // holds every grace period up for a moment
  });
  ASSERT_TRUE(waitUntil([&] { return registered.load(); }));
  Status s = rt->synchronize(std::chrono::milliseconds::max());
  EXPECT_TRUE(s.isOk()) << "synchronize(milliseconds::max()): " << s.toString();
  std::atomic<bool> ran{false};
  ASSERT_TRUE(rt->retire([&] { ran = true; }).isOk());
  Status b = rt->barrier(std::chrono::milliseconds::max());
  EXPECT_TRUE(b.isOk()) << "barrier(milliseconds::max()): " << b.toString();
  EXPECT_TRUE(ran.load());
  stop = true;
  reader.join();
}

}  // namespace

// The typed C++ handle of an AOT static call (PATCHCALL_STATIC_CALL_HANDLE): every call made
// through it is an inline site (a registered CALL site inside the calling function whose
// destination is the current target), update() and target() follow the call, and its calls
// stay right while other threads run them.
//
// StaticAotShadowStack: with shadow stacks (faked by PATCHCALL_TEST_FAKE_SHADOW_STACK=1, read
// before main: modules register at load). On x86-64 the SIGTRAP handler cannot emulate a call
// (it would have to push a return address the shadow stack does not hold), so inline calls are
// not made sites: they keep calling the trampoline, whose jmp (emulated as a jump) follows
// every update; a tail call (a jmp) still becomes a site. On A64 (arm64's GCS) nothing is
// emulated: a site is rewritten by one store while threads run it and never traps, and a `bl`
// the CPU executes pushes its own GCS entry, so inline calls stay sites, as without shadow
// stacks. Without the variable it is skipped (and the StaticCallHandle tests run); ctest's
// StaticAotShadowStack_Faked sets it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "patchcall/static_call_aot.h"
#include "patchcall/static_module.h"

extern "C" {
__attribute__((noinline)) long handleAdd1(long x) { return x + 1; }
__attribute__((noinline)) long handleTimes2(long x) { return x * 2; }
}

PATCHCALL_DEFINE_STATIC_CALL(gHandleCall, handleAdd1);

namespace {

constexpr auto kHandle = PATCHCALL_STATIC_CALL_HANDLE(gHandleCall);

// Two calls through the handle: two markers, two inline sites (the second a tail call when
// optimized).
__attribute__((noinline)) long callTwice(long x) { return kHandle(kHandle(x)); }

struct Found {
  std::vector<uintptr_t> inside;  // the call's sites inside callTwice (a call, and a tail call at -O2)
  std::vector<const void*> destinations;
  int calls = 0, tailCalls = 0, trampolines = 0;  // all of the call's sites, by kind
};

Found handleSites() {
  Found f;
  patchcall_static_sites_each(
      [](void* user, const patchcall_static_site_info* site) {
        auto* out = static_cast<Found*>(user);
        if (site->object != kHandle.object()) return 0;
        out->calls += site->kind == PATCHCALL_STATIC_SITE_CALL ? 1 : 0;
        out->tailCalls += site->kind == PATCHCALL_STATIC_SITE_TAIL_CALL ? 1 : 0;
        out->trampolines += site->kind == PATCHCALL_STATIC_SITE_TRAMPOLINE ? 1 : 0;
        auto a = reinterpret_cast<uintptr_t>(site->address);
        // Within 4 KiB of callTwice's start (sanitizer builds make it long; only it uses kHandle).
        if ((site->kind == PATCHCALL_STATIC_SITE_CALL || site->kind == PATCHCALL_STATIC_SITE_TAIL_CALL) &&
            a >= reinterpret_cast<uintptr_t>(&callTwice) && a < reinterpret_cast<uintptr_t>(&callTwice) + 4096) {
          out->inside.push_back(a);
          out->destinations.push_back(site->destination);
        }
        return 0;
      },
      &f);
  return f;
}

bool fakedShadowStack() {
  const char* fake = std::getenv("PATCHCALL_TEST_FAKE_SHADOW_STACK");
  return fake != nullptr && std::strcmp(fake, "1") == 0;
}

TEST(StaticCallHandle, EveryCallIsAnInlineSiteThatFollowsUpdate) {
  if (fakedShadowStack()) GTEST_SKIP() << "shadow stacks faked: no inline call sites (StaticAotShadowStack)";
  ASSERT_EQ(kHandle.target(), &handleAdd1);
  EXPECT_EQ(callTwice(1), 3);
  Found before = handleSites();
  ASSERT_EQ(before.inside.size(), 2u) << "each call through the handle must be an inline site of the calling function";
  for (const void* d : before.destinations) EXPECT_EQ(d, reinterpret_cast<const void*>(&handleAdd1));

  ASSERT_EQ(kHandle.update(&handleTimes2), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(kHandle.target(), &handleTimes2);
  EXPECT_EQ(callTwice(3), 12);
  for (const void* d : handleSites().destinations) EXPECT_EQ(d, reinterpret_cast<const void*>(&handleTimes2));

  ASSERT_EQ(kHandle.updateReturn0(), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(callTwice(5), 0);
  ASSERT_EQ(kHandle.update(&handleAdd1), PATCHCALL_OK);
  EXPECT_EQ(callTwice(1), 3);
}

TEST(StaticCallHandle, CallsStayRightWhileUpdatesRun) {
  std::atomic<bool> stop{false};
  std::atomic<long> wrong{0}, calls{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        long r = callTwice(10);  // each call adds 1 or doubles: 12, 21, 22 or 40
        if (r != 12 && r != 21 && r != 22 && r != 40) wrong.fetch_add(1);
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // The readers run between the updates (on a loaded machine they would otherwise start
  // after the last one): every 40 updates wait (at most 2 s) for 100 more calls.
  auto waitCalls = [&](long more) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (long want = calls.load() + more; calls.load() < want && std::chrono::steady_clock::now() < end;) {
      std::this_thread::yield();
    }
  };
  for (int i = 0; i < 400; ++i) {
    if (i % 40 == 0) waitCalls(100);
    ASSERT_EQ(kHandle.update((i & 1) == 0 ? &handleTimes2 : &handleAdd1), PATCHCALL_OK) << patchcall_last_error_message();
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << calls.load() << " calls";
  EXPECT_GT(calls.load(), 1000) << "the readers hardly ran: the test proved little";
  ASSERT_EQ(kHandle.update(&handleAdd1), PATCHCALL_OK);
}

#if defined(__aarch64__)
TEST(StaticAotShadowStack, InlineCallsStayInlineSites) {
  if (!fakedShadowStack()) GTEST_SKIP() << "run with PATCHCALL_TEST_FAKE_SHADOW_STACK=1";
  Found f = handleSites();
  ASSERT_EQ(f.inside.size(), 2u) << "with no trap to emulate, shadow stacks must not cost A64 its inline sites";
  for (const void* d : f.destinations) EXPECT_EQ(d, reinterpret_cast<const void*>(&handleAdd1));
  EXPECT_EQ(f.trampolines, 1);
  EXPECT_EQ(callTwice(1), 3);
  ASSERT_EQ(kHandle.update(&handleTimes2), PATCHCALL_OK) << patchcall_last_error_message();
  for (const void* d : handleSites().destinations) EXPECT_EQ(d, reinterpret_cast<const void*>(&handleTimes2));
  EXPECT_EQ(callTwice(3), 12);
  ASSERT_EQ(kHandle.update(&handleAdd1), PATCHCALL_OK);
}
#else
TEST(StaticAotShadowStack, InlineCallsKeepTheirTrampoline) {
  if (!fakedShadowStack()) GTEST_SKIP() << "run with PATCHCALL_TEST_FAKE_SHADOW_STACK=1";
  Found f = handleSites();
  EXPECT_EQ(f.calls, 0) << "an inline call became a site although its call cannot be emulated";
  EXPECT_EQ(f.trampolines, 1);
  EXPECT_LE(f.tailCalls, 1);
  EXPECT_EQ(callTwice(1), 3);
  ASSERT_EQ(kHandle.update(&handleTimes2), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(callTwice(3), 12);
  ASSERT_EQ(kHandle.update(&handleAdd1), PATCHCALL_OK);
}
#endif

}  // namespace

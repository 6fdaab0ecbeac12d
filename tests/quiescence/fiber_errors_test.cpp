// Bad inputs to the stack API: every misuse is an error value naming the problem, and a
// switch patchcall was not told about is detected at the next switchStack.
#include <gtest/gtest.h>

#include "fiber_util.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

void expectInvalid(const Status& s, const char* needle, const char* what) {
  EXPECT_EQ(s.code(), Error::kInvalidArgument) << what << ": " << s.toString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << what << ": message should mention '" << needle
                                                        << "': " << s.message();
}

TEST(StackErrors, RegisterRejectsNullEmptyWrappingAndOverlappingRanges) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  MappedStack stack(64 * 1024);
  ASSERT_TRUE(stack.ok());
  expectInvalid(rt->registerStack(nullptr, 4096).status(), "non-null", "null lo");
  expectInvalid(rt->registerStack(stack.base(), 0).status(), "non-zero", "size 0");
  expectInvalid(rt->registerStack(reinterpret_cast<void*>(UINTPTR_MAX - 4095), 8192).status(), "wrap", "wrapping");
  Result<StackHandle> a = rt->registerStack(stack.base(), stack.size(), "a");
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  EXPECT_TRUE(a->valid());
  EXPECT_FALSE(a->isHome());
  auto* mid = static_cast<uint8_t*>(stack.base()) + 4096;
  expectInvalid(rt->registerStack(mid, 4096, "inside").status(), "overlaps", "overlap inside");
  expectInvalid(rt->registerStack(static_cast<uint8_t*>(stack.base()) - 4096, 8192, "below").status(), "overlaps",
                "overlap from below");
  // Adjacent is fine (the hole above the mapping is never touched: nothing runs there).
  Result<StackHandle> adjacent = rt->registerStack(reinterpret_cast<void*>(stack.hi()), 4096, "adjacent");
  EXPECT_TRUE(adjacent.isOk()) << adjacent.status().toString();
  EXPECT_TRUE(rt->unregisterStack(*adjacent).isOk());
  expectInvalid(rt->unregisterStack(*adjacent), "stale", "unregister twice");
  TestThread t;
  ASSERT_TRUE(t.registerWith(*rt, "stale-switcher").isOk());
  Status staleSwitch;
  ASSERT_TRUE(t.run([&] { staleSwitch = switchStack(*adjacent); }));
  expectInvalid(staleSwitch, "stale", "switch to an unregistered stack");
  ASSERT_TRUE(t.unregister());
  EXPECT_TRUE(rt->unregisterStack(*a).isOk());
  // The range is free again.
  Result<StackHandle> again = rt->registerStack(stack.base(), stack.size(), "again");
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_EQ(again->index, a->index) << "the slot was not reused";
  EXPECT_NE(again->generation, a->generation) << "a reused slot must change generation";
  expectInvalid(rt->unregisterStack(*a), "stale", "unregister through the stale handle");
  EXPECT_TRUE(rt->unregisterStack(*again).isOk());
}

TEST(StackErrors, UnregisterRefusesHomeForeignAndRunningStacks) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  auto other = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk() && other.isOk());
  MappedStack stack(64 * 1024);
  Result<StackHandle> h = rt->registerStack(stack.base(), stack.size(), "busy");
  ASSERT_TRUE(h.isOk()) << h.status().toString();
  expectInvalid(rt->unregisterStack(StackHandle::home()), "home", "home handle");
  expectInvalid(other->unregisterStack(*h), "this runtime", "another runtime's stack");
  expectInvalid(rt->unregisterStack(StackHandle{}), "this runtime", "default handle");

  // A thread claims the stack without really running on it (as a buggy embedder would): it
  // counts as running, and the switch back is reported as one patchcall was not told about.
  TestThread t, u;
  ASSERT_TRUE(t.registerWith(*rt, "claims-busy").isOk());
  ASSERT_TRUE(u.registerWith(*rt, "wants-busy").isOk());
  Status claimed, stolen, back;
  ASSERT_TRUE(t.run([&] { claimed = switchStack(*h); }));
  ASSERT_TRUE(claimed.isOk()) << claimed.toString();
  expectInvalid(rt->unregisterStack(*h), "running", "unregister while running");
  ASSERT_TRUE(u.run([&] { stolen = switchStack(*h); }));
  expectInvalid(stolen, "running on tid", "resume elsewhere");
  EXPECT_NE(stolen.message().find(std::to_string(t.tid())), std::string::npos) << stolen.message();
  EXPECT_NE(stolen.message().find("busy"), std::string::npos) << "should name the stack: " << stolen.message();
  ASSERT_TRUE(t.run([&] { back = switchToHomeStack(); }));
  EXPECT_TRUE(back.isOk()) << back.toString();
  std::vector<std::string> unknown = log.matching("does not know");
  ASSERT_EQ(unknown.size(), 1u) << log.all();
  EXPECT_NE(unknown[0].find("claims-busy"), std::string::npos) << unknown[0];
  EXPECT_TRUE(rt->unregisterStack(*h).isOk());
  ASSERT_TRUE(t.unregister() && u.unregister());
}

TEST(StackErrors, SwitchRefusesUnregisteredThreadsAndBadHandles) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  auto other = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk() && other.isOk());
  MappedStack stack(64 * 1024);
  Result<StackHandle> h = other->registerStack(stack.base(), stack.size(), "elsewhere");
  ASSERT_TRUE(h.isOk());
  EXPECT_EQ(switchStack(*h).code(), Error::kNotRegistered);
  EXPECT_EQ(switchToHomeStack().code(), Error::kNotRegistered);
  TestThread t;
  ASSERT_TRUE(t.registerWith(*rt, "switcher").isOk());
  Status foreign, invalid, home;
  ASSERT_TRUE(t.run([&] {
    foreign = switchStack(*h);
    invalid = switchStack(StackHandle{});
    home = switchToHomeStack();  // already there: a no-op
  }));
  expectInvalid(foreign, "not a stack registered", "another runtime's handle");
  expectInvalid(invalid, "not a stack registered", "default handle");
  EXPECT_TRUE(home.isOk()) << home.toString();
  ASSERT_TRUE(other->unregisterStack(*h).isOk());
  EXPECT_TRUE(log.matching("does not know").empty()) << log.all();
  ASSERT_TRUE(t.unregister());
}

}  // namespace

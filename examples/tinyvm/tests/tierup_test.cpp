// tinyvm tiering: a function's key starts at its lazy-compile stub and moves to compiled
// code at the first call (or after a threshold of interpreted calls); the sites in callers
// then decode as direct calls to the new code; the stub is retired and, once no stack can
// hold it, freed (filled with int3 / udf).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "disasm.h"
#include "interpreter.h"
#include "isa.h"
#include "test_util.h"

namespace tinyvm {
namespace {

const char kProgram[] =
    "fn fib(n) { if (n < 2) { return n; } return fib(n - 1) + fib(n - 2); }\n"
    "fn main() { return fib(15) + fib(3); }\n";

// Checks each recorded site of `code`: registered with patchcall, bound to `key`, and the
// ISA's direct call (x86 E8 rel32 with the rel32 4-byte aligned, A64 bl) whose decoded target
// is `target`.
void expectSitesCall(patchcall::Runtime& rt, const FunctionInfo& caller, patchcall::Key key, const void* target,
                     size_t expectedSites) {
  ASSERT_EQ(caller.sites.size(), expectedSites) << caller.name;
  for (const void* site : caller.sites) {
    patchcall::Result<patchcall::SiteInfo> info = rt.site(site);
    ASSERT_TRUE(info.isOk()) << "site " << test::hex(site) << " in " << caller.name << ": " << info.status().toString();
    EXPECT_EQ(info->key, key) << "site " << test::hex(site);
    patchcall::test::Decoded d = patchcall::test::decodeAt(site);
    ASSERT_TRUE(d.ok && d.isCall && d.length == patchcall::test::callSize())
        << "site " << test::hex(site) << " decodes as '" << d.text << "'";
    EXPECT_EQ(d.target, reinterpret_cast<uint64_t>(target))
        << "site " << test::hex(site) << " in " << caller.name << ": '" << d.text << "', expected a call to " << test::hex(target);
    EXPECT_EQ(patchcall::test::directCallTarget(static_cast<const uint8_t*>(site)), reinterpret_cast<uintptr_t>(target))
        << "site " << test::hex(site) << " is not the ISA's direct call";
    EXPECT_EQ((reinterpret_cast<uintptr_t>(site) + patchcall::test::callFieldOffset()) % 4, 0u)
        << "a Direct site's patched field must be 4-byte aligned";
  }
}

TEST(TinyVmTierUp, FirstCallCompilesRetargetsTheKeyAndFreesTheStub) {
  Loaded l = test::loadSource(kProgram);
  std::unique_ptr<Vm> vm = test::startVm(l.program);
  ASSERT_NE(vm, nullptr);
  patchcall::Runtime& rt = vm->runtime();
  uint32_t fib = *l.program.find("fib"), main = *l.program.find("main");

  FunctionInfo before = vm->info(fib);
  EXPECT_EQ(before.tier, 0);
  ASSERT_NE(before.stub, nullptr);
  EXPECT_EQ(before.target, before.stub) << "a function's key must start at its lazy-compile stub";
  EXPECT_EQ(vm->stats().compiles, 0u);

  {
    auto scope = vm->attachThread("tier-up");
    ASSERT_TRUE(scope.isOk());
    patchcall::Result<int64_t> r = vm->call(main, {});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(*r, 610 + 2);
  }
  FunctionInfo after = vm->info(fib);
  EXPECT_EQ(after.tier, 1);
  ASSERT_NE(after.code, nullptr);
  EXPECT_EQ(after.target, after.code) << "the key must target the compiled code after tier-up";
  EXPECT_EQ(after.stub, nullptr);
  EXPECT_EQ(after.tier0Calls, 1u) << "only the first call may reach the stub";
  EXPECT_EQ(vm->stats().compiles, 2u);
  EXPECT_EQ(vm->stats().interpretedCalls, 0u) << "lazy tiering compiles at the first call";

  expectSitesCall(rt, vm->info(main), after.key, after.code, 2);  // main -> fib, twice
  expectSitesCall(rt, after, after.key, after.code, 2);            // fib -> fib, twice

  // The retired stubs are freed once a grace period passes with no stack inside them.
  ASSERT_TRUE(rt.barrier(std::chrono::milliseconds(5000)).isOk());
  patchcall::RuntimeStats s = rt.stats();
  EXPECT_EQ(s.blobsRetired, 2u) << "one stub per function";
  EXPECT_EQ(s.blobsFreed, 2u);
  EXPECT_EQ(*static_cast<const uint8_t*>(before.stub), patchcall::test::fillByte())
      << "freed code must be filled with the trapping fill (int3, udf)";
}

TEST(TinyVmTierUp, ThresholdInterpretsFirstThenCompiles) {
  Loaded l = test::loadSource(kProgram);
  VmOptions o;
  o.tiering = Tiering::kThreshold;
  o.threshold = 5;
  std::unique_ptr<Vm> vm = test::startVm(l.program, o);
  ASSERT_NE(vm, nullptr);
  uint32_t fib = *l.program.find("fib");
  auto scope = vm->attachThread("threshold");
  ASSERT_TRUE(scope.isOk());
  // fib(1) and fib(0) do not recurse: each is one call through the key.
  for (int i = 1; i <= 5; ++i) {
    patchcall::Result<int64_t> r = vm->call(fib, std::vector<int64_t>{1});
    ASSERT_TRUE(r.isOk());
    EXPECT_EQ(*r, 1);
    FunctionInfo info = vm->info(fib);
    EXPECT_EQ(info.tier, 0) << "compiled after " << i << " calls, threshold is 5";
    EXPECT_EQ(info.target, info.stub);
    EXPECT_EQ(vm->stats().interpretedCalls, static_cast<uint64_t>(i));
  }
  patchcall::Result<int64_t> r = vm->call(fib, std::vector<int64_t>{20});
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(*r, 6765);
  FunctionInfo info = vm->info(fib);
  EXPECT_EQ(info.tier, 1) << "the 6th call must compile";
  EXPECT_EQ(info.target, info.code);
  EXPECT_EQ(vm->stats().interpretedCalls, 5u) << "no interpreted call after the tier-up";
  EXPECT_EQ(vm->stats().compiles, 1u);
}

TEST(TinyVmTierUp, RacingFirstCallsCompileOnce) {
  Loaded l = test::loadSource(kProgram);
  std::unique_ptr<Vm> vm = test::startVm(l.program);
  ASSERT_NE(vm, nullptr);
  uint32_t main = *l.program.find("main");
  std::atomic<int> ready{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto scope = vm->attachThread("racer-" + std::to_string(t));
      if (!scope) return (void)wrong.fetch_add(1);
      ready.fetch_add(1);
      while (ready.load() < 4) std::this_thread::yield();
      for (int i = 0; i < 20; ++i) {
        patchcall::Result<int64_t> r = vm->call(main, {});
        if (!r || *r != 612) wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(vm->stats().compiles, 2u) << "each function compiles once however many threads hit its stub";
  EXPECT_EQ(vm->stats().stubsInstalled, 2u);
  ASSERT_TRUE(vm->runtime().barrier(std::chrono::milliseconds(5000)).isOk());
  EXPECT_EQ(vm->runtime().stats().blobsFreed, 2u);
}

TEST(TinyVmTierUp, CallsFromUnattachedThreadsAreRefused) {
  Loaded l = test::loadSource(kProgram);
  std::unique_ptr<Vm> vm = test::startVm(l.program);
  ASSERT_NE(vm, nullptr);
  patchcall::Result<int64_t> r = vm->call(*l.program.find("main"), {});
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.code(), patchcall::Error::kNotRegistered) << r.status().toString();
  auto scope = vm->attachThread("t");
  ASSERT_TRUE(scope.isOk());
  EXPECT_EQ(vm->call(*l.program.find("fib"), {}).code(), patchcall::Error::kInvalidArgument) << "arity is checked";
  EXPECT_EQ(vm->call(99, {}).code(), patchcall::Error::kInvalidArgument);
  EXPECT_EQ(vm->call("nope", {}).code(), patchcall::Error::kInvalidArgument);
}

}  // namespace
}  // namespace tinyvm

// tinyvm hot reload: functions are redefined while threads run them. Every result must come
// from the old or the new definition (never a torn mix), a call that starts after reload()
// returned must see the new one, and old code must be freed only once no thread runs it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "compiler.h"
#include "interpreter.h"
#include "isa.h"
#include "parser.h"
#include "test_util.h"

namespace tinyvm {
namespace {

using Clock = std::chrono::steady_clock;

Module parseOrFail(const std::string& name, const std::string& text) {
  Outcome<Module> m = parse(Source{name, text});
  EXPECT_TRUE(m.isOk()) << m.error.toString();
  return m.isOk() ? std::move(*m.value) : Module{};
}

struct ThreadTally {
  uint64_t calls = 0, oldResults = 0, newResults = 0, afterReload = 0;
  std::string firstProblem;
};

TEST(TinyVmReload, FourThreadsSwitchWithZeroWrongResultsAndOldCodeIsFreed) {
  Loaded base = test::load(test::programPath("reload.tvm"));
  LoadOutcome patchFile = parseFile(test::programPath("reload_v2.tvm"));
  ASSERT_TRUE(patchFile.ok) << patchFile.error;
  const Module& patch = patchFile.loaded.module;
  uint32_t main = *base.program.find("main");
  int64_t oldResult = Interpreter(base.program).call(main, {});
  Outcome<CompiledModule> merged = compile(patch, &base.program);
  ASSERT_TRUE(merged.isOk());
  int64_t newResult = Interpreter(merged.value->program).call(main, {});
  ASSERT_NE(oldResult, newResult) << "the test needs distinguishable results";

  std::unique_ptr<Vm> vm = test::startVm(base.program);
  ASSERT_NE(vm, nullptr);
  std::atomic<bool> reloaded{false};
  std::atomic<int> warm{0};
  std::vector<ThreadTally> tallies(4);
  std::vector<std::thread> threads;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      ThreadTally& tally = tallies[static_cast<size_t>(t)];
      auto scope = vm->attachThread("reload-" + std::to_string(t));
      if (!scope) return (void)(tally.firstProblem = scope.status().toString());
      bool sawNew = false;
      while (tally.afterReload < 20 && Clock::now() < deadline) {
        bool after = reloaded.load(std::memory_order_acquire);
        patchcall::Result<int64_t> r = vm->call(main, {});
        if (++tally.calls == 1) warm.fetch_add(1);
        std::string problem;
        if (!r) problem = r.status().toString();
        else if (*r == oldResult && (after || sawNew)) problem = after ? "old result from a call started after reload()" : "old result after a new one";
        else if (*r == oldResult) ++tally.oldResults;
        else if (*r == newResult) ++tally.newResults, sawNew = true;
        else problem = "result " + std::to_string(*r) + " is neither old nor new";
        if (after) ++tally.afterReload;
        if (!problem.empty() && tally.firstProblem.empty()) tally.firstProblem = "call " + std::to_string(tally.calls) + ": " + problem;
      }
    });
  }
  // Every thread has run old code (the first call compiles it: slow under an emulator).
  while (warm.load() < 4 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  FunctionInfo oldScale = vm->info(*base.program.find("scale"));
  ReloadResult r = vm->reload(patch);
  reloaded.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.redefined.size(), 2u) << "scale (redefined) and offset (new)";

  uint64_t oldTotal = 0, newTotal = 0;
  for (size_t t = 0; t < tallies.size(); ++t) {
    EXPECT_EQ(tallies[t].firstProblem, "") << "thread " << t;
    EXPECT_EQ(tallies[t].afterReload, 20u) << "thread " << t << " did not finish its calls after the reload in time";
    oldTotal += tallies[t].oldResults, newTotal += tallies[t].newResults;
  }
  EXPECT_GT(newTotal, 0u);
  // The old definition of scale had been compiled; its code is retired and, with every
  // thread gone, freed.
  ASSERT_NE(oldScale.code, nullptr) << "scale should have tiered up before the reload";
  ASSERT_TRUE(vm->runtime().barrier(std::chrono::milliseconds(5000)).isOk());
  patchcall::RuntimeStats s = vm->runtime().stats();
  EXPECT_EQ(s.blobsFreed, s.blobsRetired);
  EXPECT_GE(s.blobsRetired, 3u + 1u + 2u) << "3 first stubs, old scale code, 2 post-reload stubs";
  // Freed code is filled with int3 / udf (fillByte); but threads kept compiling after the old
  // code was freed, and the arena's first fit may have handed its range to one of those blobs
  // (seen under ASan).
  std::string reusedBy;
  for (uint32_t i = 0; i < vm->functionCount(); ++i) {
    FunctionInfo f = vm->info(i);
    if (f.code == oldScale.code || f.stub == oldScale.code) reusedBy = f.name + (f.code == oldScale.code ? " code" : " stub");
  }
  EXPECT_TRUE(*static_cast<const uint8_t*>(oldScale.code) == patchcall::test::fillByte() || !reusedBy.empty())
      << "old code at " << test::hex(oldScale.code) << " not freed (not fill-filled, and no live function starts there)";
  if (!reusedBy.empty()) std::printf("reload: the old code's range now holds live %s\n", reusedBy.c_str());
  FunctionInfo newScale = vm->info(*base.program.find("scale"));
  EXPECT_EQ(newScale.version, 2u);
  EXPECT_EQ(newScale.tier, 1);
  std::printf("reload: %llu old and %llu new results; blobs retired %llu, freed %llu, pinned rounds %llu\n",
              static_cast<unsigned long long>(oldTotal), static_cast<unsigned long long>(newTotal),
              static_cast<unsigned long long>(s.blobsRetired), static_cast<unsigned long long>(s.blobsFreed),
              static_cast<unsigned long long>(s.blobsPinnedByStacks));
}

// A thread sits in a loop inside f's old code while f is redefined: the old code is retired
// but must stay (barrier times out, the stack scan pins it) until the thread leaves it.
TEST(TinyVmReload, OldCodeStaysWhileAThreadIsInsideIt) {
  Loaded base = test::loadSource(
      "fn stop() { return 0; }\n"
      "fn f() { var i = 0; while (stop() == 0) { i = i + 1; } return i; }\n");
  std::unique_ptr<Vm> vm = test::startVm(base.program);
  ASSERT_NE(vm, nullptr);
  uint32_t f = *base.program.find("f"), stop = *base.program.find("stop");
  std::atomic<int64_t> result{-1};
  std::thread runner([&] {
    auto scope = vm->attachThread("looper");
    if (!scope) return;
    patchcall::Result<int64_t> r = vm->call(f, {});
    result.store(r ? *r : -2);
  });
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (vm->info(stop).tier != 1 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(vm->info(stop).tier, 1) << "the runner never reached f's loop";
  FunctionInfo oldF = vm->info(f);
  ASSERT_NE(oldF.code, nullptr);

  ReloadResult r1 = vm->reload(parseOrFail("f2.tvm", "fn f() { return 42; }\n"));
  ASSERT_TRUE(r1.status.isOk()) << r1.status.toString();
  patchcall::Status pinned = vm->runtime().barrier(std::chrono::milliseconds(300));
  EXPECT_EQ(pinned.code(), patchcall::Error::kTimeout)
      << "old f is still executing, it must not be freed: " << pinned.toString();
  EXPECT_GT(vm->runtime().stats().blobsPinnedByStacks, 0u);
  EXPECT_NE(*static_cast<const uint8_t*>(oldF.code), patchcall::test::fillByte()) << "old f was freed under a running thread";
  EXPECT_EQ(result.load(), -1) << "the runner must still be looping";

  ReloadResult r2 = vm->reload(parseOrFail("stop2.tvm", "fn stop() { return 1; }\n"));
  ASSERT_TRUE(r2.status.isOk()) << r2.status.toString();
  runner.join();
  EXPECT_GE(result.load(), 1) << "old f should count its iterations and return";
  ASSERT_TRUE(vm->runtime().barrier(std::chrono::milliseconds(5000)).isOk());
  EXPECT_EQ(*static_cast<const uint8_t*>(oldF.code), patchcall::test::fillByte()) << "old f must be freed once the thread left it";
  EXPECT_EQ(vm->runtime().stats().blobsFreed, vm->runtime().stats().blobsRetired);

  auto scope = vm->attachThread("main");
  ASSERT_TRUE(scope.isOk());
  EXPECT_EQ(*vm->call(f, {}), 42);
}

TEST(TinyVmReload, RepeatedReloadsWhileThreadsRun) {
  Loaded base = test::loadSource(
      "fn leaf(x) { return x + 1; }\n"
      "fn mid(x) { return leaf(x) * 2; }\n"
      "fn main() { var i = 0; var s = 0; while (i < 200) { s = s + mid(i); i = i + 1; } return s; }\n");
  const char* defs[2] = {"fn leaf(x) { return x + 1; }\n", "fn leaf(x) { return x + 2; }\n"};
  // sum over i < 200 of 2 * (i + k) = 2 * 19900 + 400 k; a mix of definitions inside one
  // main() is allowed (threads switch at their next call), so check the range and parity.
  const int64_t lo = 2 * 19900 + 400, hi = 2 * 19900 + 800;
  std::unique_ptr<Vm> vm = test::startVm(base.program);
  ASSERT_NE(vm, nullptr);
  uint32_t main = *base.program.find("main");
  std::atomic<bool> done{false};
  std::atomic<uint64_t> wrong{0}, calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      auto scope = vm->attachThread("rr-" + std::to_string(t));
      if (!scope) return (void)wrong.fetch_add(1);
      while (!done.load()) {
        patchcall::Result<int64_t> r = vm->call(main, {});
        if (!r || *r < lo || *r > hi || *r % 2 != 0) wrong.fetch_add(1);
        calls.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 30; ++i) {
    ReloadResult r = vm->reload(parseOrFail("leaf.tvm", defs[(i + 1) % 2]));
    ASSERT_TRUE(r.status.isOk()) << r.status.toString();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0u) << "out of " << calls.load() << " calls";
  ASSERT_TRUE(vm->runtime().barrier(std::chrono::milliseconds(5000)).isOk());
  patchcall::RuntimeStats s = vm->runtime().stats();
  EXPECT_EQ(s.blobsFreed, s.blobsRetired);
  EXPECT_EQ(vm->stats().reloads, 30u);
}

TEST(TinyVmReload, BadReloadsChangeNothing) {
  Loaded base = test::loadSource("fn f(a) { return a; }\nfn main() { return f(5); }\n");
  std::unique_ptr<Vm> vm = test::startVm(base.program);
  ASSERT_NE(vm, nullptr);
  ReloadResult arity = vm->reload(parseOrFail("p.tvm", "fn f(a, b) { return a; }\n"));
  EXPECT_EQ(arity.status.code(), patchcall::Error::kInvalidArgument);
  EXPECT_NE(arity.diagnostic.find("p.tvm:1:4: error: redefinition of 'f' changes its arity"), std::string::npos) << arity.diagnostic;
  ReloadResult unknown = vm->reload(parseOrFail("p.tvm", "fn f(a) { return nope(a); }\n"));
  EXPECT_NE(unknown.diagnostic.find("p.tvm:1:18: error: unknown function 'nope'"), std::string::npos) << unknown.diagnostic;
  EXPECT_EQ(vm->info(0).version, 1u);
  EXPECT_EQ(vm->functionCount(), 2u);
  auto scope = vm->attachThread("t");
  ASSERT_TRUE(scope.isOk());
  EXPECT_EQ(*vm->call(*base.program.find("main"), {}), 5);

  VmOptions hard;
  hard.jit.calls = CallMode::kHardwired;
  scope->reset();
  std::unique_ptr<Vm> wired = test::startVm(base.program, hard);
  ASSERT_NE(wired, nullptr);
  EXPECT_EQ(wired->reload(parseOrFail("p.tvm", "fn f(a) { return 1; }\n")).status.code(), patchcall::Error::kInvalidArgument)
      << "hard-wired calls cannot follow a reload";
}

}  // namespace
}  // namespace tinyvm

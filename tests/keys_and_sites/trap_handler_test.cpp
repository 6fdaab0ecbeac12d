// The SIGTRAP handler cannot lose a trap: a thread that trapped on a breakpoint site and is
// held inside the handler while later protocol rounds of the same site come and go must
// still be sent to a target, never chained as an unowned SIGTRAP. Runs in a child (death
// test): the handler that gives up kills the process with SIGTRAP.
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "emulation.h"
#include "jit_targets.h"
#include "patchcall/jit.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

namespace x86 = asmjit::x86;
using Fn = int (*)();

constexpr int kStalledSteps = 6;  // three lookups and three byte reads, as the old handler made

thread_local bool tlsStallMe = false;
std::atomic<int> gReached{0}, gReleased{0};                     // handler steps
std::atomic<int> gInRound{0}, gRoundsReleased{0};               // breakpoint rounds (int3 written)
std::atomic<int> gUpdateWanted{0}, gUpdateDone{0};              // the updater's commands
std::atomic<bool> gGaveUp{false};

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Waits until `cell >= value`, at most 10 s (then gives up so no test ever hangs).
bool waitAtLeast(const std::atomic<int>& cell, int value) {
  int64_t end = nowNs() + 10'000'000'000;
  while (cell.load() < value) {
    if (nowNs() > end) {
      gGaveUp.store(true);
      return false;
    }
  }
  return true;
}

// Signal context: atomics and clock_gettime only.
void stallInHandler(int step) {
  if (!tlsStallMe || step >= kStalledSteps) return;
  gReached.store(step + 1);
  waitAtLeast(gReleased, step + 1);
}

void holdRound() {
  int round = gInRound.load() + 1;
  gInRound.store(round);
  waitAtLeast(gRoundsReleased, round);
}

int stallAcrossRounds() {
  Result<Runtime> rt = Runtime::create();
  if (!rt) return 10;
  std::vector<const void*> targets = test::installTargets(*rt, 5, 700);
  Result<Key> key = rt->createKey(targets[0], "hot");
  if (targets.size() != 5 || !key) return 11;
  jit::Assembler a(*rt);
  a.sub(x86::rsp, 8);
  if (!jit::emitCall(a, *key, SiteForm::kBreakpoint).isOk()) return 12;
  a.add(x86::rsp, 8);
  a.ret();
  Result<Blob> blob = jit::install(a);
  if (!blob) return 13;
  auto fn = reinterpret_cast<Fn>(blob->code);

  testing::setTrapHandlerHook(&stallInHandler);
  testing::setAfterBreakpointInt3Hook(&holdRound);
  std::thread updater([&] {
    for (int n = 1; n <= 4; ++n) {
      if (!waitAtLeast(gUpdateWanted, n)) return;
      if (!rt->update(*key, targets[static_cast<size_t>(n)]).isOk()) gGaveUp.store(true);
      gUpdateDone.store(n);
    }
  });
  std::atomic<int> result{-1};
  auto release = [](std::atomic<int>& cell, int n) { cell.store(n); };

  // Round 1 is on (int3 written): the caller traps and stops before its first lookup.
  release(gUpdateWanted, 1);
  waitAtLeast(gInRound, 1);
  std::thread caller([&] {
    tlsStallMe = true;
    result.store(fn());
  });
  waitAtLeast(gReached, 1);
  // Three times: the round the caller's lookup would find ends before the lookup, and the
  // next round writes its int3 between the lookup and the byte read.
  for (int pass = 0; pass < 3; ++pass) {
    release(gRoundsReleased, pass + 1);   // round pass+1 ends: E8 back, entry removed
    waitAtLeast(gUpdateDone, pass + 1);
    release(gReleased, 2 * pass + 1);     // lookup: no entry
    waitAtLeast(gReached, 2 * pass + 2);
    release(gUpdateWanted, pass + 2);     // round pass+2: entry published, int3 written
    waitAtLeast(gInRound, pass + 2);
    release(gReleased, 2 * pass + 2);     // byte read: 0xCC
    if (pass < 2) waitAtLeast(gReached, 2 * pass + 3);
  }
  // The old handler chains here (SIGTRAP); a handler that cannot lose finds round 4's entry.
  int64_t end = nowNs() + 10'000'000'000;
  while (result.load() == -1 && nowNs() < end) std::this_thread::yield();
  release(gRoundsReleased, 4);
  caller.join();
  updater.join();
  testing::setTrapHandlerHook(nullptr);
  testing::setAfterBreakpointInt3Hook(nullptr);
  std::fprintf(stderr, "caller returned %d (round 4's target returns %d), %llu traps emulated%s\n", result.load(),
               test::idOf(targets[4]), static_cast<unsigned long long>(rt->stats().trapsEmulated),
               gGaveUp.load() ? ", a wait gave up" : "");
  std::fflush(stderr);
  if (gGaveUp.load()) return 2;
  return result.load() == test::idOf(targets[4]) && rt->stats().trapsEmulated >= 1 ? 0 : 1;
}

TEST(TrapHandlerDeathTest, ThreadHeldInTheHandlerAcrossThreeRoundsIsStillEmulated) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(_exit(stallAcrossRounds()), ::testing::ExitedWithCode(0), "caller returned 704");
}

}  // namespace
}  // namespace patchcall

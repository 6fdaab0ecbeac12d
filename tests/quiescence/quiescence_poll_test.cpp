// JIT safepoint polls: a hot loop with jit::emitSafepointPoll lets grace periods complete, and
// the out-of-line slow path returns with every register the loop keeps live intact. The loop
// and the poll's instructions are the host ISA's (support/poll_loop.h).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>

#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "isa.h"
#include "poll_loop.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;
using patchcall::test::countingLoopRegisters;
using patchcall::test::emitCountingLoop;
using patchcall::test::loopCounterStep;
using LoopFrame = patchcall::test::CountingLoopFrame;

namespace {

using LoopFn = void (*)(LoopFrame*);

TEST(QuiescencePoll, JitLoopWithPollLetsGracePeriodsCompleteAndKeepsItsRegisters) {
  DiagnosticLog log;
  Options o;
  o.backgroundReclaimer = false;
  o.diagnosticSink = log.sink();
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> loop = emitCountingLoop(*rt, /*withPoll=*/true);
  ASSERT_TRUE(loop.isOk()) << loop.status().toString();

  LoopFrame frame;
  TestThread jitThread;  // the only registered thread: every grace period needs its poll
  OnExit stopOnExit([&] { __atomic_store_n(&frame.stop, 1, __ATOMIC_RELEASE); });
  ASSERT_TRUE(jitThread.registerWith(*rt, "jit-loop").isOk());
  jitThread.post([&] { reinterpret_cast<LoopFn>(loop->code)(&frame); });
  ASSERT_TRUE(waitUntil([&] { return __atomic_load_n(&frame.progress, __ATOMIC_RELAXED) > 0; }))
      << "the JIT loop never started";

  // Each grace period can only end through the poll's slow path in the JIT loop.
  constexpr int kGracePeriods = 300;
  uint64_t gp0 = rt->stats().gracePeriods;
  for (int i = 0; i < kGracePeriods; ++i) {
    Status s = rt->synchronize(5000ms);
    ASSERT_TRUE(s.isOk()) << "grace period " << i << " with a thread in a polling JIT loop: " << s.toString();
  }
  EXPECT_GE(rt->stats().gracePeriods - gp0, static_cast<uint64_t>(kGracePeriods));
  __atomic_store_n(&frame.stop, 1, __ATOMIC_RELEASE);
  ASSERT_TRUE(jitThread.waitIdle()) << "the JIT loop did not exit after stop was set";

  // Every register the loop kept live survived 300+ slow-path calls.
  const patchcall::test::CountingLoopRegisters& regs = countingLoopRegisters();
  const uint64_t n = frame.iterations;
  ASSERT_GT(n, 0u);
  EXPECT_EQ(frame.progress, n);
  EXPECT_EQ(frame.argOut, reinterpret_cast<uint64_t>(&frame)) << regs.arg << " was clobbered";
  for (size_t k = 0; k < regs.gprs.size(); ++k) {
    EXPECT_EQ(frame.gpr[k], loopCounterStep(static_cast<int>(k)) * n)
        << regs.gprs[k] << " was clobbered across the poll's slow path (" << n << " iterations)";
  }
  for (int i = 0; i < regs.vectors; ++i) {
    EXPECT_EQ(frame.vec[i][0], frame.inc[0] * n) << regs.vectorPrefix << i << " low lane was clobbered";
    EXPECT_EQ(frame.vec[i][1], frame.inc[1] * n) << regs.vectorPrefix << i << " high lane was clobbered";
  }
  EXPECT_EQ(frame.markerOut[0], frame.marker[0]) << regs.marker << " was clobbered";
  EXPECT_EQ(frame.markerOut[1], frame.marker[1]) << regs.marker << " was clobbered";
  std::printf("[ info ] %d grace periods completed through the JIT poll during %llu loop iterations\n",
              kGracePeriods, static_cast<unsigned long long>(n));
}

TEST(QuiescencePoll, JitLoopWithoutPollHoldsUpTheGracePeriod) {
  DiagnosticLog log;
  Options o;
  o.backgroundReclaimer = false;
  o.diagnosticSink = log.sink();
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> loop = emitCountingLoop(*rt, /*withPoll=*/false);
  ASSERT_TRUE(loop.isOk()) << loop.status().toString();

  LoopFrame frame;
  TestThread jitThread;
  OnExit stopOnExit([&] { __atomic_store_n(&frame.stop, 1, __ATOMIC_RELEASE); });
  ASSERT_TRUE(jitThread.registerWith(*rt, "no-poll-loop").isOk());
  jitThread.post([&] {
    reinterpret_cast<LoopFn>(loop->code)(&frame);
    (void)goOffline();  // after the loop: never holds a grace period again
  });
  ASSERT_TRUE(waitUntil([&] { return __atomic_load_n(&frame.progress, __ATOMIC_RELAXED) > 0; }));
  Status s = rt->synchronize(100ms);
  EXPECT_EQ(s.code(), Error::kTimeout) << "a JIT loop without a poll let the grace period end: " << s.toString();
  EXPECT_NE(s.message().find("no-poll-loop"), std::string::npos) << s.message();
  __atomic_store_n(&frame.stop, 1, __ATOMIC_RELEASE);
  ASSERT_TRUE(jitThread.waitIdle());
  Status after = rt->synchronize(2000ms);
  EXPECT_TRUE(after.isOk()) << after.toString();
}

// The fast path is one compare or load of the flag and a branch to the out-of-line slow path
// (x86 `cmp byte [rip+flag], 0 ; jne`, A64 `adrp x16 ; ldrb w16 ; cbnz w16`).
TEST(QuiescencePoll, PollIsOneCompareOfTheFlagAndABranch) {
  auto rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  jit::Assembler a(*rt);
  ASSERT_TRUE(jit::emitSafepointPoll(a).isOk());
  patchcall::test::emitRet(a);
  Result<Blob> blob = jit::install(a);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  std::vector<uint8_t> b = readBytes(blob->code, blob->size);
  std::string wrong = patchcall::test::checkPollInstructions(b, blob->code, rt->safepointFlag());
  EXPECT_EQ(wrong, "") << hexBytes(b);
  using Fn = void (*)();
  reinterpret_cast<Fn>(blob->code)();  // the fast path falls through to the ret
}

}  // namespace

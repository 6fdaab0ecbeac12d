// JIT safepoint polls: a hot loop with jit::emitSafepointPoll lets grace periods complete, and
// the out-of-line slow path returns with every register the loop keeps live intact.
#include <gtest/gtest.h>

#include <asmjit/x86.h>

#include <cstddef>
#include <cstring>

#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;
namespace x86 = asmjit::x86;

namespace {

// Registers the loop keeps live across its poll (rax counts iterations, rdi points here).
const x86::Gp kCounters[] = {x86::rcx, x86::rdx, x86::rsi, x86::r8,  x86::r9,  x86::r10, x86::r11,
                             x86::rbx, x86::rbp, x86::r12, x86::r13, x86::r14, x86::r15};
const char* const kCounterNames[] = {"rcx", "rdx", "rsi", "r8",  "r9",  "r10", "r11",
                                     "rbx", "rbp", "r12", "r13", "r14", "r15"};
constexpr int kNumCounters = sizeof(kCounters) / sizeof(kCounters[0]);
constexpr int kNumXmmCounters = 14;  // xmm0..xmm13 accumulate xmm14; xmm15 holds a marker

uint64_t counterStep(int k) { return 2 * static_cast<uint64_t>(k) + 3; }

// Shared with the JIT loop (offsets are baked into the code).
struct LoopFrame {
  uint64_t stop = 0;      // the loop exits once this is non-zero
  uint64_t progress = 0;  // rax, stored every iteration
  uint64_t iterations = 0;
  uint64_t rdiOut = 0;
  uint64_t gpr[kNumCounters] = {};
  alignas(16) uint64_t inc[2] = {1, 0x10001};
  alignas(16) uint64_t marker[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};
  alignas(16) uint64_t xmm[kNumXmmCounters][2] = {};
  alignas(16) uint64_t markerOut[2] = {};
};

x86::Mem field(size_t offset) { return x86::qword_ptr(x86::rdi, static_cast<int32_t>(offset)); }
x86::Mem xfield(size_t offset) { return x86::xmmword_ptr(x86::rdi, static_cast<int32_t>(offset)); }

// void loop(LoopFrame*): counts in 13 GPRs and 14 XMM registers until frame->stop is set.
Result<Blob> emitCountingLoop(Runtime& rt, bool withPoll) {
  jit::Assembler a(rt);
  for (x86::Gp r : {x86::rbx, x86::rbp, x86::r12, x86::r13, x86::r14, x86::r15}) a.push(r);
  a.xor_(x86::eax, x86::eax);
  for (const x86::Gp& r : kCounters) a.xor_(r.r32(), r.r32());
  a.movdqu(x86::xmm14, xfield(offsetof(LoopFrame, inc)));
  a.movdqu(x86::xmm15, xfield(offsetof(LoopFrame, marker)));
  for (int i = 0; i < kNumXmmCounters; ++i) a.pxor(x86::xmm(i), x86::xmm(i));
  asmjit::Label top = a.newLabel();
  a.bind(top);
  a.add(x86::rax, 1);
  for (int k = 0; k < kNumCounters; ++k) a.add(kCounters[k], static_cast<int32_t>(counterStep(k)));
  for (int i = 0; i < kNumXmmCounters; ++i) a.paddq(x86::xmm(i), x86::xmm14);
  a.mov(field(offsetof(LoopFrame, progress)), x86::rax);
  if (withPoll) PATCHCALL_TRY(jit::emitSafepointPoll(a));
  a.cmp(x86::byte_ptr(x86::rdi, static_cast<int32_t>(offsetof(LoopFrame, stop))), 0);
  a.je(top);
  a.mov(field(offsetof(LoopFrame, iterations)), x86::rax);
  a.mov(field(offsetof(LoopFrame, rdiOut)), x86::rdi);
  for (int k = 0; k < kNumCounters; ++k) a.mov(field(offsetof(LoopFrame, gpr) + 8 * k), kCounters[k]);
  for (int i = 0; i < kNumXmmCounters; ++i) a.movdqu(xfield(offsetof(LoopFrame, xmm) + 16 * i), x86::xmm(i));
  a.movdqu(xfield(offsetof(LoopFrame, markerOut)), x86::xmm15);
  for (x86::Gp r : {x86::r15, x86::r14, x86::r13, x86::r12, x86::rbp, x86::rbx}) a.pop(r);
  a.ret();
  return jit::install(a);
}

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
  const uint64_t n = frame.iterations;
  ASSERT_GT(n, 0u);
  EXPECT_EQ(frame.progress, n);
  EXPECT_EQ(frame.rdiOut, reinterpret_cast<uint64_t>(&frame)) << "rdi was clobbered";
  for (int k = 0; k < kNumCounters; ++k) {
    EXPECT_EQ(frame.gpr[k], counterStep(k) * n)
        << kCounterNames[k] << " was clobbered across the poll's slow path (" << n << " iterations)";
  }
  for (int i = 0; i < kNumXmmCounters; ++i) {
    EXPECT_EQ(frame.xmm[i][0], frame.inc[0] * n) << "xmm" << i << " low lane was clobbered";
    EXPECT_EQ(frame.xmm[i][1], frame.inc[1] * n) << "xmm" << i << " high lane was clobbered";
  }
  EXPECT_EQ(frame.markerOut[0], frame.marker[0]) << "xmm15 was clobbered";
  EXPECT_EQ(frame.markerOut[1], frame.marker[1]) << "xmm15 was clobbered";
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

// The fast path is `cmp byte [rip+flag], 0` followed by a jne to the out-of-line slow path.
TEST(QuiescencePoll, PollIsOneCompareOfTheFlagAndABranch) {
  auto rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  jit::Assembler a(*rt);
  ASSERT_TRUE(jit::emitSafepointPoll(a).isOk());
  a.ret();
  Result<Blob> blob = jit::install(a);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  std::vector<uint8_t> b = readBytes(blob->code, blob->size);
  ASSERT_GE(b.size(), 9u);
  ASSERT_EQ(b[0], 0x80) << "not `cmp byte [mem], imm8`: " << hexBytes(b);
  ASSERT_EQ(b[1], 0x3D) << "not rip-relative: " << hexBytes(b);
  EXPECT_EQ(b[6], 0x00) << "compares against a non-zero immediate: " << hexBytes(b);
  int32_t disp;
  std::memcpy(&disp, &b[2], 4);
  const auto* flag = static_cast<const uint8_t*>(blob->code) + 7 + disp;
  EXPECT_EQ(static_cast<const volatile void*>(flag), static_cast<const volatile void*>(rt->safepointFlag()))
      << "the poll compares the wrong byte: " << hexBytes(b);
  bool jne = b[7] == 0x75 || (b[7] == 0x0F && b[8] == 0x85);
  EXPECT_TRUE(jne) << "the compare is not followed by jne: " << hexBytes(b);
  using Fn = void (*)();
  reinterpret_cast<Fn>(blob->code)();  // the fast path falls through to the ret
}

}  // namespace

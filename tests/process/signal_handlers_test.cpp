// patchcall's process-wide SIGTRAP handler next to an embedder's own signal handlers.
// A handler is installed once per process, so every scenario runs in a fresh child
// (EXPECT_EXIT, "threadsafe" style re-executes the binary).
//   - a SIGTRAP handler installed BEFORE Runtime::create receives every SIGTRAP patchcall
//     does not own (raise(), an unrelated int3), in both sa_handler and sa_sigaction form,
//     while patchcall keeps emulating calls that hit its own int3s;
//   - a SIGTRAP handler installed AFTER Runtime::create that chains to the handler it
//     replaced (the documented recipe) keeps the breakpoint protocol working;
//   - SIGSEGV handlers are never touched.
// (BreakpointTrapChainDeathTest.* covers chaining without emulation running.)
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "emulation.h"
#include "isa.h"
#include "error_checks.h"
#include "quiescence_util.h"

namespace patchcall {
namespace {

namespace x86 = asmjit::x86;
using checks::callInt;
using namespace std::chrono_literals;

std::atomic<int> gTraps{0};
void countingSigaction(int, siginfo_t*, void*) { gTraps.fetch_add(1); }
void countingHandler(int) { gTraps.fetch_add(1); }

struct sigaction installTrapHandler(bool siginfo) {
  struct sigaction sa, old;
  std::memset(&sa, 0, sizeof sa);
  if (siginfo) {
    sa.sa_sigaction = countingSigaction;
    sa.sa_flags = SA_SIGINFO;
  } else {
    sa.sa_handler = countingHandler;
  }
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTRAP, &sa, &old);
  return old;
}

// Calls through `sites` unaligned Breakpoint sites of one key on a second thread while this
// thread retargets the key between two targets; returns how many calls patchcall's handler
// emulated (bounded: stops after `minTraps` or 4 s). Every call must return a target's value.
struct ProtocolRun {
  uint64_t traps = 0, calls = 0, wrong = 0;
};
ProtocolRun runBreakpointProtocol(Runtime& rt, uint64_t minTraps) {
  ProtocolRun run;
  Result<Blob> one = checks::installReturner(rt, 1), two = checks::installReturner(rt, 2);
  Result<Key> key = one ? rt.createKey(one->code) : Result<Key>(Error::kUnknownKey, "");
  if (!two || !key) return run;
  jit::Assembler a(rt);
  a.push(x86::rbx);
  a.xor_(x86::ebx, x86::ebx);
  for (int i = 0; i < 16; ++i) {
    if (a.offset() % 4 == 3) a.nop();  // keep every rel32 unaligned: a real breakpoint-protocol site
    if (!jit::emitCall(a, *key, SiteForm::kBreakpoint).isOk()) return run;
    a.add(x86::ebx, x86::eax);
  }
  a.mov(x86::eax, x86::ebx);
  a.pop(x86::rbx);
  test::emitRet(a);
  Result<Blob> caller = jit::install(a);
  if (!caller) return run;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, wrong{0};
  std::thread t([&] {
    auto fn = reinterpret_cast<int (*)()>(caller->code);
    while (!stop.load(std::memory_order_relaxed)) {
      int v = fn();
      if (v < 16 || v > 32) wrong.fetch_add(1);  // each call returns 1 or 2
      calls.fetch_add(1, std::memory_order_relaxed);
    }
  });
  uint64_t trapsBefore = rt.stats().trapsEmulated;
  auto end = qtest::Clock::now() + 4s;
  for (int i = 0; qtest::Clock::now() < end && rt.stats().trapsEmulated - trapsBefore < minTraps; ++i) {
    (void)rt.update(*key, (i % 2 == 0 ? two : one)->code);
  }
  stop = true;
  t.join();
  run.traps = rt.stats().trapsEmulated - trapsBefore;
  run.calls = calls.load();
  run.wrong = wrong.load();
  return run;
}

// An int3 in unrelated JIT code, then `mov eax, 7 ; ret`.
int callUnrelatedInt3(Runtime& rt) {
  jit::Assembler a(rt);
  a.int3();
  test::emitSetResult(a, 7);
  test::emitRet(a);
  Result<Blob> b = jit::install(a);
  return b ? callInt(b->code) : -1;
}

void previousTrapHandlerChild(bool siginfo) {
  struct sigaction old = installTrapHandler(siginfo);
  (void)old;
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  if (!rt) _exit(10);
  raise(SIGTRAP);
  int after = callUnrelatedInt3(*rt);
  ProtocolRun run = runBreakpointProtocol(*rt, 20);
  raise(SIGTRAP);
  std::fprintf(stderr, "previous handler: %d SIGTRAPs; int3 code returned %d; %llu calls, %llu emulated, %llu wrong\n",
               gTraps.load(), after, static_cast<unsigned long long>(run.calls),
               static_cast<unsigned long long>(run.traps), static_cast<unsigned long long>(run.wrong));
  std::fflush(stderr);
  // Exactly the three foreign SIGTRAPs reach the previous handler; patchcall's own do not.
  // Emulation must really have run while the previous handler was installed.
  bool ok = gTraps.load() == 3 && after == 7 && run.calls > 0 && run.traps > 0 && run.wrong == 0;
  if (run.traps == 0) std::fprintf(stderr, "(no caller hit an int3 in 4 s: emulation not exercised)\n");
  _exit(ok ? 0 : 1);
}

TEST(HardeningSignalsDeathTest, PreviousSigactionHandlerGetsForeignTrapsWhileEmulationRuns) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(previousTrapHandlerChild(true), ::testing::ExitedWithCode(0), "previous handler: 3 SIGTRAPs; int3 code returned 7");
}

TEST(HardeningSignalsDeathTest, PreviousPlainHandlerGetsForeignTrapsWhileEmulationRuns) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(previousTrapHandlerChild(false), ::testing::ExitedWithCode(0), "previous handler: 3 SIGTRAPs; int3 code returned 7");
}

// The embedder installs its SIGTRAP handler after patchcall's and chains to it for traps it
// does not own (here: all of them) -- the recipe docs/sanitizers.md gives for late handlers.
struct sigaction gPatchcallHandler;
std::atomic<uint64_t> gSeenFirst{0};
void chainingHandler(int sig, siginfo_t* info, void* ctx) {
  gSeenFirst.fetch_add(1);  // an embedder checks for its own breakpoints here first
  if ((gPatchcallHandler.sa_flags & SA_SIGINFO) != 0) gPatchcallHandler.sa_sigaction(sig, info, ctx);
}

void laterHandlerChainsChild() {
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  if (!rt) _exit(10);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = chainingHandler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTRAP, &sa, &gPatchcallHandler);
  ProtocolRun run = runBreakpointProtocol(*rt, 20);
  std::fprintf(stderr, "chained: %llu calls, %llu emulated, %llu wrong; the later handler saw %llu traps\n",
               static_cast<unsigned long long>(run.calls), static_cast<unsigned long long>(run.traps),
               static_cast<unsigned long long>(run.wrong), static_cast<unsigned long long>(gSeenFirst.load()));
  std::fflush(stderr);
  _exit(run.calls > 0 && run.traps > 0 && run.wrong == 0 && gSeenFirst.load() >= run.traps ? 0 : 1);
}

TEST(HardeningSignalsDeathTest, HandlerInstalledLaterThatChainsKeepsTheProtocolWorking) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(laterHandlerChainsChild(), ::testing::ExitedWithCode(0), "chained: [1-9][0-9]* calls, [1-9][0-9]* emulated, 0 wrong");
}

// SIGSEGV: patchcall never installs, replaces or chains a SIGSEGV handler.
sigjmp_buf gSegvJump;
std::atomic<int> gSegvs{0};
void segvHandler(int, siginfo_t*, void*) {
  gSegvs.fetch_add(1);
  siglongjmp(gSegvJump, 1);
}

// True when reading (or writing) *p raised a SIGSEGV that reached segvHandler.
__attribute__((noinline)) bool accessFaults(volatile uint8_t* p, bool write) {
  if (sigsetjmp(gSegvJump, 1) != 0) return true;
  if (write) {
    *p = 0;
  } else {
    (void)*p;
  }
  return false;
}

void segvUntouchedChild() {
  struct sigaction sa, before, after;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = segvHandler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGSEGV, nullptr, &before);
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  if (!rt) _exit(10);
  ProtocolRun run = runBreakpointProtocol(*rt, 5);
  sigaction(SIGSEGV, nullptr, &after);
  bool same = after.sa_sigaction == before.sa_sigaction && after.sa_flags == before.sa_flags;
  void* guard = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool faulted = accessFaults(static_cast<volatile uint8_t*>(guard), false);
  // A write to the RX view of the arena (W^X) is a SIGSEGV the embedder's handler sees.
  bool arenaRxFaults = accessFaults(static_cast<volatile uint8_t*>(const_cast<void*>(rt->arenaInfo().rxBase)), true);
  std::fprintf(stderr, "SIGSEGV handler %s; faults seen %d (guard %d, RX write %d); protocol calls %llu wrong %llu\n",
               same ? "unchanged" : "CHANGED", gSegvs.load(), faulted, arenaRxFaults,
               static_cast<unsigned long long>(run.calls), static_cast<unsigned long long>(run.wrong));
  std::fflush(stderr);
  _exit(same && faulted && arenaRxFaults && gSegvs.load() == 2 && run.wrong == 0 ? 0 : 1);
}

TEST(HardeningSignalsDeathTest, SigsegvHandlerIsUntouchedAndStillReceivesFaults) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(segvUntouchedChild(), ::testing::ExitedWithCode(0), "SIGSEGV handler unchanged; faults seen 2");
}

// patchcall's handler is installed once per process with SA_SIGINFO | SA_ONSTACK, whatever
// the number of runtimes; destroying a runtime leaves it (other runtimes may need it).
void handlerInstalledOnceChild() {
  struct sigaction none;
  sigaction(SIGTRAP, nullptr, &none);
  struct sigaction first, second;
  {
    Result<Runtime> a = Runtime::create(checks::quietManualOptions());
    if (!a) _exit(10);
    sigaction(SIGTRAP, nullptr, &first);
    Result<Runtime> b = Runtime::create(checks::quietManualOptions());
    if (!b) _exit(11);
  }
  sigaction(SIGTRAP, nullptr, &second);
  bool installed = (first.sa_flags & SA_SIGINFO) != 0 && first.sa_sigaction != none.sa_sigaction;
  bool onstack = (first.sa_flags & SA_ONSTACK) != 0;
  bool kept = second.sa_sigaction == first.sa_sigaction;
  std::fprintf(stderr, "handler installed %d, SA_ONSTACK %d, kept after destroy %d\n", installed, onstack, kept);
  std::fflush(stderr);
  _exit(installed && onstack && kept ? 0 : 1);
}

TEST(HardeningSignalsDeathTest, HandlerIsInstalledOncePerProcessAndOutlivesRuntimes) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(handlerInstalledOnceChild(), ::testing::ExitedWithCode(0), "handler installed 1, SA_ONSTACK 1, kept after destroy 1");
}

}  // namespace
}  // namespace patchcall

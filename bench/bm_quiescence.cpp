// patchcall benchmarks — quiescence (issue 3).
//   BM_Safepoint           one patchcall::safepoint() on a registered thread (fast path)
//   BM_Loop_NoPoll         a JIT hot loop: four dependent ALU ops per iteration
//   BM_SafepointPoll_Loop  the same loop plus jit::emitSafepointPoll (cmp byte [rip+flag],0; jne)
//   BM_GracePeriod/N       one Runtime::synchronize() while N registered readers loop
//                          { readerWork(); safepoint(); } (the same readers as BM_Urcu_GracePeriod)
#include <chrono>
#include <string>

#include "bench_support.h"
#include "grace_readers.h"

namespace {

constexpr uint64_t kLoopIterations = 1000;

struct PollFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  pcbench::JitLoop noPoll = nullptr, withPoll = nullptr;
  PollFixture() {
    rt = pcbench::newRuntime(&error);
    if (rt == nullptr) return;
    noPoll = pcbench::buildArithmeticLoop(*rt, false, &error);
    if (noPoll != nullptr) withPoll = pcbench::buildArithmeticLoop(*rt, true, &error);
  }
};

PollFixture& pollFixture() {
  static PollFixture* f = new PollFixture();  // leaked: JIT code must outlive every run
  return *f;
}

void BM_Safepoint(benchmark::State& state) {
  PollFixture& f = pollFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  for (auto _ : state) patchcall::safepoint();
}

void runArithmeticLoop(benchmark::State& state, bool withPoll) {
  PollFixture& f = pollFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  // Threads running JIT code with polls are registered (the poll's slow path reports to the domain).
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  pcbench::JitLoop loop = withPoll ? f.withPoll : f.noPoll;
  if (f.withPoll(kLoopIterations) != f.noPoll(kLoopIterations)) {
    return state.SkipWithError("the loops with and without the poll compute different results");
  }
  pcbench::LoopClock clock;
  for (auto _ : state) benchmark::DoNotOptimize(loop(kLoopIterations));
  pcbench::reportPerItem(state, clock, kLoopIterations, "ns_per_iteration");
}

void BM_Loop_NoPoll(benchmark::State& state) { runArithmeticLoop(state, false); }
void BM_SafepointPoll_Loop(benchmark::State& state) { runArithmeticLoop(state, true); }

void BM_GracePeriod(benchmark::State& state) {
  std::string error;
  patchcall::Runtime* rt = pcbench::newRuntime(&error, size_t{1} << 20);
  if (rt == nullptr) return state.SkipWithError(error.c_str());
  std::unique_ptr<patchcall::Runtime> owner(rt);
  {
    pcbench::ReaderThreads readers(static_cast<int>(state.range(0)),
                                   [rt](const std::atomic<bool>& stop, std::atomic<int>& registered) -> std::string {
                                     patchcall::Result<patchcall::ThreadScope> scope = rt->registerThread("reader");
                                     if (!scope) return "registerThread: " + scope.status().toString();
                                     registered.fetch_add(1);
                                     pcbench::readerLoop(stop, [] { patchcall::safepoint(); });
                                     return "";
                                   });
    if (!readers.waitRegistered()) return state.SkipWithError(readers.error().c_str());
    for (auto _ : state) {
      if (patchcall::Status s = rt->synchronize(std::chrono::seconds(5)); !s) {
        state.SkipWithError(("synchronize: " + s.toString()).c_str());
        break;
      }
    }
  }  // readers unregister before the runtime goes
}

}  // namespace

BENCHMARK(BM_Safepoint)->UseRealTime();
BENCHMARK(BM_Loop_NoPoll)->UseRealTime();
BENCHMARK(BM_SafepointPoll_Loop)->UseRealTime();
BENCHMARK(BM_GracePeriod)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->MinTime(0.2);

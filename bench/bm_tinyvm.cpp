// tinyvm benchmarks (issue 6): naive fib(N) in tinyvm, three ways.
//   BM_TinyVm_Fib_SiteCalls       baseline JIT; every call (fib -> fib) is a patchcall
//                                 Direct site bound to fib's key
//   BM_TinyVm_Fib_HardwiredCalls  the same JIT, but calls are plain, unpatchable call rel32
//                                 (a function calling itself calls its own entry label)
//   BM_TinyVm_Fib_Interpreter     the reference bytecode interpreter
//   BM_TinyVm_Fib_SitesOverHardwired  both JITs in one loop, alternating fib(20) calls, so
//                                 a noisy machine slows both alike; reports the ratio of
//                                 the fastest 10% of each side's calls (`ratio`)
// Goal: SiteCalls <= 1.05 x HardwiredCalls. `ns_per_call` divides by the number of fib
// invocations per iteration (2 * fib(N + 1) - 1).
#include <benchmark/benchmark.h>

#ifdef TINYVM_AVAILABLE

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "interpreter.h"
#include "loader.h"
#include "vm.h"

namespace {

constexpr int64_t kN = 20;
constexpr int64_t kFibN = 6765;           // fib(20)
constexpr double kCallsPerFib = 21891.0;  // 2 * fib(21) - 1

const char kFib[] =
    "fn fib(n) {\n"
    "  if (n < 2) { return n; }\n"
    "  return fib(n - 1) + fib(n - 2);\n"
    "}\n";

const tinyvm::Program& fibProgram() {
  static const tinyvm::Program* p = [] {
    tinyvm::LoadOutcome l = tinyvm::loadText("bench_fib.tvm", kFib);
    return l.ok ? new tinyvm::Program(std::move(l.loaded.program)) : nullptr;
  }();
  return *p;
}

void reportPerCall(benchmark::State& state) {
  state.counters["ns_per_call"] =
      benchmark::Counter(kCallsPerFib, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["calls"] = kCallsPerFib;
}

void runJit(benchmark::State& state, tinyvm::CallMode mode) {
  tinyvm::VmOptions o;
  o.tiering = tinyvm::Tiering::kEager;
  o.jit.calls = mode;
  o.runtime.arenaSize = size_t{4} << 20;
  patchcall::Result<std::unique_ptr<tinyvm::Vm>> vm = tinyvm::Vm::create(fibProgram(), o);
  if (!vm) return state.SkipWithError(vm.status().toString().c_str());
  auto scope = (*vm)->attachThread("bench");
  if (!scope) return state.SkipWithError(scope.status().toString().c_str());
  tinyvm::VmStats s = (*vm)->stats();
  bool shapeOk = mode == tinyvm::CallMode::kSites ? s.sites == 2 && s.fixedCalls == 0 : s.sites == 0 && s.fixedCalls == 2;
  if (!shapeOk) return state.SkipWithError("unexpected call shape in the compiled fib");
  const int64_t arg[1] = {kN};
  patchcall::Result<int64_t> check = (*vm)->call(0, arg);
  if (!check || *check != kFibN) return state.SkipWithError("fib(20) returned a wrong result");
  for (auto _ : state) {
    patchcall::Result<int64_t> r = (*vm)->call(0, arg);
    benchmark::DoNotOptimize(r);
  }
  reportPerCall(state);
}

std::unique_ptr<tinyvm::Vm> startFib(tinyvm::CallMode mode, benchmark::State& state) {
  tinyvm::VmOptions o;
  o.tiering = tinyvm::Tiering::kEager;
  o.jit.calls = mode;
  o.runtime.arenaSize = size_t{4} << 20;
  patchcall::Result<std::unique_ptr<tinyvm::Vm>> vm = tinyvm::Vm::create(fibProgram(), o);
  if (!vm) {
    state.SkipWithError(vm.status().toString().c_str());
    return nullptr;
  }
  return std::move(*vm);
}

void BM_TinyVm_Fib_SitesOverHardwired(benchmark::State& state) {
  std::unique_ptr<tinyvm::Vm> sites = startFib(tinyvm::CallMode::kSites, state);
  std::unique_ptr<tinyvm::Vm> wired = startFib(tinyvm::CallMode::kHardwired, state);
  if (!sites || !wired) return;
  // One thread may belong to one runtime at a time: run each side under its own registration
  // would cost a register/unregister per call, so the two VMs' code runs unregistered here.
  // That is safe because nothing is retired while the benchmark runs (eager, no reload).
  using Clock = std::chrono::steady_clock;
  std::vector<double> siteNs, wiredNs;
  const int64_t arg[1] = {kN};
  using Fib = int64_t (*)(int64_t);
  auto entryOf = [](tinyvm::Vm& vm) { return reinterpret_cast<Fib>(const_cast<void*>(vm.info(0).trampoline)); };
  Fib siteFib = entryOf(*sites), wiredFib = entryOf(*wired);
  if (siteFib(kN) != kFibN || wiredFib(kN) != kFibN) return state.SkipWithError("fib(20) returned a wrong result");
  auto fibOf = [&](Fib fib) {
    Clock::time_point t0 = Clock::now();
    int64_t r = fib(arg[0]);
    benchmark::DoNotOptimize(r);
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
  };
  for (auto _ : state) {
    siteNs.push_back(fibOf(siteFib));
    wiredNs.push_back(fibOf(wiredFib));
  }
  auto fastTenth = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = std::max<size_t>(1, v.size() / 10);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += v[i];
    return sum / static_cast<double>(n);
  };
  double s = fastTenth(siteNs), w = fastTenth(wiredNs);
  state.counters["site_ns_per_call"] = s / kCallsPerFib;
  state.counters["hardwired_ns_per_call"] = w / kCallsPerFib;
  state.counters["ratio"] = s / w;
}

void BM_TinyVm_Fib_SiteCalls(benchmark::State& state) { runJit(state, tinyvm::CallMode::kSites); }
void BM_TinyVm_Fib_HardwiredCalls(benchmark::State& state) { runJit(state, tinyvm::CallMode::kHardwired); }

void BM_TinyVm_Fib_Interpreter(benchmark::State& state) {
  tinyvm::Interpreter in(fibProgram());
  const int64_t arg[1] = {kN};
  if (in.call(0, arg) != kFibN) return state.SkipWithError("fib(20) returned a wrong result");
  for (auto _ : state) benchmark::DoNotOptimize(in.call(0, arg));
  reportPerCall(state);
}

BENCHMARK(BM_TinyVm_Fib_SiteCalls)->UseRealTime();
BENCHMARK(BM_TinyVm_Fib_HardwiredCalls)->UseRealTime();
BENCHMARK(BM_TinyVm_Fib_Interpreter)->UseRealTime();
BENCHMARK(BM_TinyVm_Fib_SitesOverHardwired)->UseRealTime()->Iterations(4000);

}  // namespace

#endif  // TINYVM_AVAILABLE

// patchcall benchmarks — telling patchcall about stack switches (issue 10).
//   BM_FiberSwitch_Bare  a round trip main -> fiber -> main with the hand-written switch
//                        (support/x86_64/fiber_switch.cpp: six pushes, two rsp moves, six pops)
//   BM_FiberSwitch       the same round trip with switchStack(fiber) before the first switch
//                        and switchToHomeStack() before the second (no grace period scans):
//                        the difference is what patchcall adds to a switch there and back
//   BM_FiberPairs        interleaved (issue 12): rounds of blocks of kTrips round trips, bare
//                        and told alternately; counter `told_minus_bare_ns` is the median over
//                        rounds of the per-round difference per round trip, `told/bare` the ratios
#include <sys/mman.h>

#include <string>

#include "bench_support.h"
#include "pairs.h"
#include "fiber_switch.h"

namespace {

constexpr size_t kStackSize = 64 * 1024;

struct Fiber {
  void* mainSp = nullptr;
  void* fiberSp = nullptr;
  bool tell = false;
  patchcall::StackHandle stack;
};

// The fiber's whole life: switch back, forever (the benchmark leaves it parked in here).
void fiberLoop(void* arg) {
  auto* f = static_cast<Fiber*>(arg);
  while (true) {
    if (f->tell) (void)patchcall::switchToHomeStack();
    pcfiber_switch(&f->fiberSp, f->mainSp);
  }
}

struct FiberFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  Fiber bare, told;
  FiberFixture() {
    rt = pcbench::newRuntime(&error, size_t{1} << 20);
    if (rt == nullptr) return;
    for (Fiber* f : {&bare, &told}) {
      void* mem = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (mem == MAP_FAILED) {
        error = "mmap of a fiber stack failed";
        return;
      }
      f->fiberSp = pcfiber::init(mem, kStackSize, &fiberLoop, f);
      f->tell = f == &told;
      if (f->tell) {
        patchcall::Result<patchcall::StackHandle> h = rt->registerStack(mem, kStackSize, "bench-fiber");
        if (!h) {
          error = "registerStack: " + h.status().toString();
          return;
        }
        f->stack = *h;
      }
    }
  }
};

FiberFixture& fixture() {
  static FiberFixture* f = new FiberFixture();  // leaked: the fibers stay parked on their stacks
  return *f;
}

void runRoundTrips(benchmark::State& state, bool tell) {
  FiberFixture& fx = fixture();
  if (!fx.error.empty()) return state.SkipWithError(fx.error.c_str());
  patchcall::Result<patchcall::ThreadScope> scope = fx.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  Fiber& f = tell ? fx.told : fx.bare;
  for (auto _ : state) {
    if (tell) (void)patchcall::switchStack(f.stack);
    pcfiber_switch(&f.mainSp, f.fiberSp);
  }
}

void BM_FiberSwitch_Bare(benchmark::State& state) { runRoundTrips(state, false); }
void BM_FiberSwitch(benchmark::State& state) { runRoundTrips(state, true); }

void BM_FiberPairs(benchmark::State& state) {
  FiberFixture& fx = fixture();
  if (!fx.error.empty()) return state.SkipWithError(fx.error.c_str());
  patchcall::Result<patchcall::ThreadScope> scope = fx.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  constexpr int kRounds = 200, kSamples = 5, kTrips = 2000;
  std::vector<double> bare, told, diff;
  auto trips = [&](bool tell) {
    Fiber& f = tell ? fx.told : fx.bare;
    double best = 1e300;
    for (int s = 0; s < kSamples; ++s) {
      best = std::min(best, pcbench::timeNs([&] {
        for (int i = 0; i < kTrips; ++i) {
          if (tell) (void)patchcall::switchStack(f.stack);
          pcfiber_switch(&f.mainSp, f.fiberSp);
        }
      }));
    }
    return best / kTrips;
  };
  for (auto _ : state) {
    for (int r = 0; r < kRounds; ++r) {
      if (r % 2 == 0) {
        bare.push_back(trips(false));
        told.push_back(trips(true));
      } else {
        told.push_back(trips(true));
        bare.push_back(trips(false));
      }
      diff.push_back(told.back() - bare.back());
    }
  }
  state.counters["bare_ns"] = pcbench::median(bare);
  state.counters["told_ns"] = pcbench::median(told);
  state.counters["told_minus_bare_ns"] = pcbench::median(diff);
  state.counters["told_minus_bare_ns.min"] = *std::min_element(diff.begin(), diff.end());
  state.counters["told_minus_bare_ns.max"] = *std::max_element(diff.begin(), diff.end());
  pcbench::reportPairRatios(state, "told/bare", told, bare);
}

}  // namespace

BENCHMARK(BM_FiberSwitch_Bare)->UseRealTime();
BENCHMARK(BM_FiberSwitch)->UseRealTime();
BENCHMARK(BM_FiberPairs)->UseRealTime()->Iterations(1);

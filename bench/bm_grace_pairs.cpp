// patchcall benchmarks — grace periods, patchcall against liburcu-qsbr with the SAME readers,
// interleaved (issue 12).
//   BM_GracePairs/N          N reader threads, each registered with both a patchcall Runtime
//                            and liburcu-qsbr, loop { readerWork(); patchcall::safepoint();
//                            rcu_quiescent_state(); }. The writer alternates blocks of
//                            Runtime::synchronize() and synchronize_rcu(), each grace period
//                            timed alone; a round's figure per side is its block's median, a
//                            pair ratio patchcall/urcu per round (pairs.h).
//   BM_GracePairs_Offline/N  realistic readers: mostly offline (blocked in nanosleep 1 ms, offline
//                            in both domains), then briefly online for ~20 reader steps with
//                            quiescent states, as runtime threads that block on I/O or locks.
// Counters per side (pc_, urcu_): p50/p90 ns over every grace period, and vcsw_per_gp: the
// writer's voluntary context switches per grace period (getrusage RUSAGE_THREAD), i.e. how
// often a grace period slept on its futex instead of spinning. scheduler_bound = 1 when there
// are more readers than cores: then both figures measure how the scheduler rotates busy
// threads, and bench-table labels the row so.
#include <sys/resource.h>
#include <time.h>

#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "grace_readers.h"
#include "pairs.h"

#ifdef PCBENCH_HAVE_URCU_QSBR
#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#endif

namespace {

#ifdef PCBENCH_HAVE_URCU_QSBR

long voluntarySwitches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nvcsw;
}

void runGracePairs(benchmark::State& state, bool offlineReaders) {
  const int readerCount = static_cast<int>(state.range(0));
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const bool schedulerBound = readerCount > cores && !offlineReaders;
  const int rounds = schedulerBound ? 8 : 40, block = schedulerBound ? 5 : 25;
  std::string error;
  patchcall::Runtime* rt = pcbench::newRuntime(&error, size_t{1} << 20);
  if (rt == nullptr) return state.SkipWithError(error.c_str());
  std::unique_ptr<patchcall::Runtime> owner(rt);
  std::vector<double> pcAll, urcuAll, pcRound, urcuRound;
  long pcSwitches = 0, urcuSwitches = 0;
  {
    pcbench::ReaderThreads readers(
        readerCount, [rt, offlineReaders](const std::atomic<bool>& stop, std::atomic<int>& registered) -> std::string {
          patchcall::Result<patchcall::ThreadScope> scope = rt->registerThread("reader");
          if (!scope) return "registerThread: " + scope.status().toString();
          rcu_register_thread();
          registered.fetch_add(1);
          uint64_t x = 1;
          while (!stop.load(std::memory_order_relaxed)) {
            if (offlineReaders) {
              (void)patchcall::goOffline();
              rcu_thread_offline();
              timespec ts{0, 1000 * 1000};
              nanosleep(&ts, nullptr);
              rcu_thread_online();
              (void)patchcall::goOnline();
            }
            for (int i = 0; i < (offlineReaders ? 20 : 1); ++i) {
              x = pcbench::readerWork(x);
              patchcall::safepoint();
              rcu_quiescent_state();
            }
          }
          benchmark::DoNotOptimize(x);
          rcu_unregister_thread();
          return "";
        });
    if (!readers.waitRegistered()) return state.SkipWithError(readers.error().c_str());
    auto blockOf = [&](bool patchcallSide, std::vector<double>* all, long* switches) {
      std::vector<double> v;
      long s0 = voluntarySwitches();
      for (int i = 0; i < block; ++i) {
        v.push_back(pcbench::timeNs([&] {
          if (patchcallSide) {
            if (patchcall::Status s = rt->synchronize(std::chrono::seconds(5)); !s && error.empty()) {
              error = "synchronize: " + s.toString();
            }
          } else {
            synchronize_rcu();
          }
        }));
      }
      *switches += voluntarySwitches() - s0;
      all->insert(all->end(), v.begin(), v.end());
      return pcbench::median(v);
    };
    for (auto _ : state) {
      for (int r = 0; r < rounds && error.empty(); ++r) {
        if (r % 2 == 0) {
          pcRound.push_back(blockOf(true, &pcAll, &pcSwitches));
          urcuRound.push_back(blockOf(false, &urcuAll, &urcuSwitches));
        } else {
          urcuRound.push_back(blockOf(false, &urcuAll, &urcuSwitches));
          pcRound.push_back(blockOf(true, &pcAll, &pcSwitches));
        }
      }
    }
  }  // readers unregister before the runtime goes
  if (!error.empty()) return state.SkipWithError(error.c_str());
  state.counters["readers"] = readerCount;
  state.counters["cores"] = cores;
  state.counters["scheduler_bound"] = schedulerBound ? 1 : 0;
  state.counters["pc_p50_ns"] = pcbench::quantile(pcAll, 0.5);
  state.counters["pc_p90_ns"] = pcbench::quantile(pcAll, 0.9);
  state.counters["urcu_p50_ns"] = pcbench::quantile(urcuAll, 0.5);
  state.counters["urcu_p90_ns"] = pcbench::quantile(urcuAll, 0.9);
  state.counters["pc_vcsw_per_gp"] = static_cast<double>(pcSwitches) / static_cast<double>(pcAll.size());
  state.counters["urcu_vcsw_per_gp"] = static_cast<double>(urcuSwitches) / static_cast<double>(urcuAll.size());
  pcbench::reportPairRatios(state, "patchcall/urcu", pcRound, urcuRound);
}

void BM_GracePairs(benchmark::State& state) { runGracePairs(state, false); }
void BM_GracePairs_Offline(benchmark::State& state) { runGracePairs(state, true); }

#else

void BM_GracePairs(benchmark::State& state) {
  state.SkipWithError("built without liburcu-qsbr (apt-get install liburcu-dev, then reconfigure)");
}
void BM_GracePairs_Offline(benchmark::State& state) { BM_GracePairs(state); }

#endif

}  // namespace

BENCHMARK(BM_GracePairs)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->Iterations(1);
BENCHMARK(BM_GracePairs_Offline)->Arg(4)->Arg(8)->UseRealTime()->Iterations(1);

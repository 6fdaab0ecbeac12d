// patchcall benchmarks — the liburcu-qsbr baseline for BM_GracePeriod (issue 3).
//   BM_Urcu_GracePeriod/N  one synchronize_rcu() while N registered QSBR readers loop
//                          { readerWork(); rcu_quiescent_state(); }
// Sequential: the goal rows use BM_GracePairs (bm_grace_pairs.cpp), both domains against the
// same readers, interleaved. Its own TU: urcu's headers define many macros. _LGPL_SOURCE inlines rcu_quiescent_state(),
// as patchcall::safepoint() is inline.
#include <string>

#include "bench_support.h"
#include "grace_readers.h"

#ifdef PCBENCH_HAVE_URCU_QSBR
#define _LGPL_SOURCE
#include <urcu-qsbr.h>
#endif

namespace {

void BM_Urcu_GracePeriod(benchmark::State& state) {
#ifndef PCBENCH_HAVE_URCU_QSBR
  state.SkipWithError("built without liburcu-qsbr (apt-get install liburcu-dev, then reconfigure)");
#else
  pcbench::ReaderThreads readers(static_cast<int>(state.range(0)),
                                 [](const std::atomic<bool>& stop, std::atomic<int>& registered) -> std::string {
                                   rcu_register_thread();
                                   registered.fetch_add(1);
                                   pcbench::readerLoop(stop, [] { rcu_quiescent_state(); });
                                   rcu_unregister_thread();
                                   return "";
                                 });
  if (!readers.waitRegistered()) return state.SkipWithError(readers.error().c_str());
  for (auto _ : state) synchronize_rcu();
#endif
}

}  // namespace

BENCHMARK(BM_Urcu_GracePeriod)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->MinTime(0.2);

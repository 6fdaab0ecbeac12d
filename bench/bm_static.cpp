// patchcall benchmarks — AOT static calls, static branches and static keys (issue 16).
//
// The measured code is in support/static_loops.cpp (its own TU; see there for how the inline
// and the out-of-line call differ). Rows, each beside the existing rows it is compared with
// (BM_Call_Direct, BM_Call_FunctionPointer, BM_Call_Retpoline in bm_calls.cpp,
// BM_Membarrier_SyncCore in bm_update_single.cpp):
//   BM_StaticCall_Inline         `acc = PATCHCALL_STATIC_CALL(pcbench_sc_add)(acc)` x 1000: an inline
//                                site, which the runtime rewrote into `call pcbench_add1` (checked
//                                before timing; the label names the site and its destination)
//   BM_StaticCall_Handle         the same loop through the typed C++ handle,
//                                PATCHCALL_STATIC_CALL_HANDLE(pcbench_sc_add): an inline site too
//   BM_StaticCall_OutOfLine      the same static call through its trampoline: `call` to the
//                                trampoline (no marker, so no site), then its `jmp rel32`
//   BM_StaticBranch_NoCheck      1000 iterations of a small multiply-xorshift body, no check
//   BM_StaticBranch_Disabled     the same with `if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&key))` (NOP5)
//   BM_StaticBranch_AtomicFlag   the same with `if (flag.load(std::memory_order_relaxed))`
//   BM_StaticBranch_FunctionHook the same with a call through a hook pointer to a no-op
//   BM_StaticKey_Flip/1000       one key with 1000 branches (pcbench_flip_sites, never called):
//                                enable then disable per iteration, reported per flip
//                                (ns_per_flip); a BusyPeer runs, as for every sync-costing row;
//                                syncs, pwrites, sites written and batches per flip from
//                                patchcall_static_stats_get
// Interleaved pairs for scripts/bench-table (per-round ratios <pair>.p50/.min/.max, pairs.h):
//   BM_StaticPairs               the call and branch loops above plus bm_calls.cpp's JIT
//                                hard-wired latency loop (lat_direct), a GCC-compiled direct loop
//                                (cxx_direct: byte for byte the inline and handle loops once
//                                patched, checked),
//                                fnptr and retpoline, in rotating order, fastest of kSamples per round
//                                Throughput loops (32 independent calls per iteration, *_tput) for
//                                the inline site, the trampoline, the GCC direct call and a control
//                                (a NOP5 or a `jmp +0` before each direct call: can the loop see one
//                                more instruction?),
//                                and the "wide" branch loops (four independent one-cycle updates:
//                                issue-bound, the NOP5's worst case), info rows
//   BM_StaticKeyPairs            rounds of blocks: one membarrier(SYNC_CORE) vs one flip of the
//                                1000-branch key (alternately enable / disable), BusyPeer running;
//                                peer_apart as in BM_UpdatePairs
//   BM_CallgrindCalls_Static     scripts/bench-callgrind's dumps for the static variants (its
//                                filter ^BM_CallgrindCalls takes this one too)
#include <valgrind/callgrind.h>

#include <sched.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pairs.h"
#include "static_checks.h"
#include "static_loops.h"
#include "update_fixture.h"

// The slow path and hook of the branch loops: here, so static_loops.cpp cannot see them.
extern "C" __attribute__((noinline)) uint64_t pcbench_branch_slow(uint64_t x) { return x + 1; }
extern "C" __attribute__((noinline)) void pcbench_hook_noop(uint64_t x) { benchmark::DoNotOptimize(x); }
extern "C" __attribute__((noinline)) void pcbench_static_sink(uint64_t i) { benchmark::DoNotOptimize(i); }

namespace {

using pcbench::kCallsPerLoop;
constexpr uint64_t kBranchIterations = 1000;  // loop iterations per branch-loop run
constexpr uint64_t kTputIterations = 64;      // throughput-loop iterations per run: 2048 calls
constexpr int kRounds = 200, kSamples = 20;   // as BM_CallPairs
constexpr int kFlipRounds = 60, kFlipBlock = 32;  // as BM_UpdatePairs
constexpr int kCallgrindRuns = 100;

using pcbench::checkBranchKey;
using pcbench::checkFlipKey;
using pcbench::checkStaticCall;
using pcbench::FlipBranches;
using pcbench::flipBranches;
using pcbench::keyError;
using pcbench::reportFlipStats;
using pcbench::staticStats;
const void* const kAdd1 = pcbench::kStaticAdd1;

// ---- single rows ---------------------------------------------------------------------------

void runLoop(benchmark::State& state, uint64_t (*loop)(uint64_t), uint64_t n, uint64_t expect, const char* counter) {
  if (uint64_t got = loop(n); got != expect) {
    return state.SkipWithError(("the loop returned " + std::to_string(got) + ", expected " + std::to_string(expect)).c_str());
  }
  pcbench::LoopClock clock;
  for (auto _ : state) benchmark::DoNotOptimize(loop(n));
  pcbench::reportPerItem(state, clock, n, counter);
}

void BM_StaticCall_Inline(benchmark::State& state) {
  std::string label;
  if (std::string e = checkStaticCall(&label); !e.empty()) return state.SkipWithError(e.c_str());
  state.SetLabel(label);
  runLoop(state, &pcbench_static_inline_loop, kCallsPerLoop, kCallsPerLoop, "ns_per_call");
}

void BM_StaticCall_Handle(benchmark::State& state) {
  std::string label;
  if (std::string e = checkStaticCall(&label); !e.empty()) return state.SkipWithError(e.c_str());
  runLoop(state, &pcbench_static_handle_loop, kCallsPerLoop, kCallsPerLoop, "ns_per_call");
}

void BM_StaticCall_OutOfLine(benchmark::State& state) {
  std::string label;
  if (std::string e = checkStaticCall(&label); !e.empty()) return state.SkipWithError(e.c_str());
  runLoop(state, &pcbench_static_ool_loop, kCallsPerLoop, kCallsPerLoop, "ns_per_call");
}

void runBranch(benchmark::State& state, uint64_t (*loop)(uint64_t)) {
  if (std::string e = checkBranchKey(); !e.empty()) return state.SkipWithError(e.c_str());
  runLoop(state, loop, kBranchIterations, pcbench_branch_nocheck_loop(kBranchIterations), "ns_per_iteration");
}
void BM_StaticBranch_NoCheck(benchmark::State& state) { runBranch(state, &pcbench_branch_nocheck_loop); }
void BM_StaticBranch_Disabled(benchmark::State& state) { runBranch(state, &pcbench_branch_disabled_loop); }
void BM_StaticBranch_AtomicFlag(benchmark::State& state) { runBranch(state, &pcbench_branch_atomic_loop); }
void BM_StaticBranch_FunctionHook(benchmark::State& state) { runBranch(state, &pcbench_branch_hook_loop); }

void BM_StaticKey_Flip(benchmark::State& state) {
  if (!pcbench::registerSyncCore(state)) return;
  if (std::string e = checkFlipKey(static_cast<size_t>(state.range(0))); !e.empty()) return state.SkipWithError(e.c_str());
  pcbench::BusyPeer peer;
  int apart = 0, placed = 0;
  std::string error;
  patchcall_static_stats before = staticStats();
  pcbench::LoopClock clock;
  for (auto _ : state) {
    if (int e = patchcall_static_key_enable(&pcbench_flip_key); e != PATCHCALL_OK) {
      error = keyError("enable", e);
      break;
    }
    if (int e = patchcall_static_key_disable(&pcbench_flip_key); e != PATCHCALL_OK) {
      error = keyError("disable", e);
      break;
    }
    apart += sched_getcpu() != peer.cpu() ? 1 : 0;
    ++placed;
  }
  if (!error.empty()) return state.SkipWithError(error.c_str());
  pcbench::reportPerItem(state, clock, 2, "ns_per_flip");
  reportFlipStats(state, before, 2.0 * static_cast<double>(state.iterations()));
  state.counters["branches"] = static_cast<double>(state.range(0));
  state.counters["peer_apart"] = placed > 0 ? static_cast<double>(apart) / placed : 0;
  if (FlipBranches f = flipBranches(); f.jumping != 0) state.SkipWithError("after the run some branches still jump");
}

// ---- interleaved pairs ---------------------------------------------------------------------

struct Variant {
  std::string name;
  std::function<uint64_t()> run;
  uint64_t items;   // calls or loop iterations per run
  uint64_t expect;  // run()'s result
};

struct StaticPairsFixture {
  std::string error, label;
  std::vector<Variant> variants;

  StaticPairsFixture() {
    if (error = checkStaticCall(&label); !error.empty()) return;
    if (error = checkBranchKey(); !error.empty()) return;
    patchcall::Runtime* rt = pcbench::newRuntime(&error);  // for the JIT hard-wired loop (leaked)
    if (rt == nullptr) return;
    pcbench::JitLoop jit = pcbench::buildCallLoop(
        *rt, [](patchcall::jit::Assembler& a) { return patchcall::jit::emitFixedCall(a, kAdd1); }, &error);
    if (jit == nullptr) return;
    auto call = [&](const char* name, std::function<uint64_t()> run) {
      variants.push_back({name, std::move(run), kCallsPerLoop, kCallsPerLoop});
    };
    pcbench::CallTarget fn = &pcbench_add1;
    call("static_inline", [] { return pcbench_static_inline_loop(kCallsPerLoop); });
    call("static_handle", [] { return pcbench_static_handle_loop(kCallsPerLoop); });
    call("static_ool", [] { return pcbench_static_ool_loop(kCallsPerLoop); });
    call("cxx_direct", [] { return pcbench_cxx_direct_loop(kCallsPerLoop); });
    call("lat_direct", [jit] { return jit(kCallsPerLoop); });
    call("fnptr", [fn] { return pcbench::runPointerLoop(fn, kCallsPerLoop); });
    call("retpoline", [fn] { return pcbench_run_retpoline_loop(fn, kCallsPerLoop); });
    auto tput = [&](const char* name, uint64_t (*loop)(uint64_t)) {
      variants.push_back({name, [loop] { return loop(kTputIterations); }, kTputIterations * pcbench::kStaticTputSlots,
                          pcbench::kStaticTputSlots});
    };
    tput("static_inline_tput", &pcbench_static_inline_tput);
    tput("static_ool_tput", &pcbench_static_ool_tput);
    tput("cxx_direct_tput", &pcbench_cxx_direct_tput);
    tput("ctl_nop5_tput", &pcbench_cxx_ctl_nop5_tput);
    tput("ctl_jmp_tput", &pcbench_cxx_ctl_jmp_tput);
    uint64_t want = pcbench_branch_nocheck_loop(kBranchIterations);
    auto branch = [&](const char* name, uint64_t (*loop)(uint64_t)) {
      variants.push_back({name, [loop] { return loop(kBranchIterations); }, kBranchIterations, want});
    };
    branch("branch_nocheck", &pcbench_branch_nocheck_loop);
    branch("branch_disabled", &pcbench_branch_disabled_loop);
    branch("branch_atomic", &pcbench_branch_atomic_loop);
    branch("branch_hook", &pcbench_branch_hook_loop);
    uint64_t wide = pcbench_wide_nocheck_loop(kBranchIterations);
    for (auto [name, loop] : {std::pair{"wide_nocheck", &pcbench_wide_nocheck_loop},
                              std::pair{"wide_disabled", &pcbench_wide_disabled_loop},
                              std::pair{"wide_atomic", &pcbench_wide_atomic_loop}}) {
      variants.push_back({name, [loop] { return loop(kBranchIterations); }, kBranchIterations, wide});
    }
  }

  const Variant* find(const std::string& name) const {
    for (const Variant& v : variants) {
      if (v.name == name) return &v;
    }
    return nullptr;
  }
};

StaticPairsFixture& pairsFixture() {
  static StaticPairsFixture* f = new StaticPairsFixture();  // leaked: the JIT loop must outlive every run
  return *f;
}

bool verified(benchmark::State& state, const StaticPairsFixture& f) {
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return false;
  }
  for (const Variant& v : f.variants) {
    if (uint64_t got = v.run(); got != v.expect) {
      state.SkipWithError((v.name + " returned " + std::to_string(got) + ", expected " + std::to_string(v.expect)).c_str());
      return false;
    }
  }
  return true;
}

const char* const kPairs[][3] = {
    {"static_inline/lat_direct", "static_inline", "lat_direct"},
    {"static_inline/cxx_direct", "static_inline", "cxx_direct"},
    {"static_handle/cxx_direct", "static_handle", "cxx_direct"},
    {"static_ool/lat_direct", "static_ool", "lat_direct"},
    {"static_ool/static_inline", "static_ool", "static_inline"},
    {"fnptr/static_inline", "fnptr", "static_inline"},
    {"retpoline/static_inline", "retpoline", "static_inline"},
    {"cxx_direct/lat_direct", "cxx_direct", "lat_direct"},
    {"branch_disabled/branch_nocheck", "branch_disabled", "branch_nocheck"},
    {"branch_atomic/branch_nocheck", "branch_atomic", "branch_nocheck"},
    {"branch_hook/branch_nocheck", "branch_hook", "branch_nocheck"},
    {"branch_atomic/branch_disabled", "branch_atomic", "branch_disabled"},
    {"static_inline_tput/cxx_direct_tput", "static_inline_tput", "cxx_direct_tput"},
    {"static_ool_tput/cxx_direct_tput", "static_ool_tput", "cxx_direct_tput"},
    {"ctl_nop5_tput/cxx_direct_tput", "ctl_nop5_tput", "cxx_direct_tput"},
    {"ctl_jmp_tput/cxx_direct_tput", "ctl_jmp_tput", "cxx_direct_tput"},
    {"wide_disabled/wide_nocheck", "wide_disabled", "wide_nocheck"},
    {"wide_atomic/wide_nocheck", "wide_atomic", "wide_nocheck"},
};

void BM_StaticPairs(benchmark::State& state) {
  StaticPairsFixture& f = pairsFixture();
  if (!verified(state, f)) return;
  const size_t n = f.variants.size();
  std::vector<std::vector<double>> ticks(n);  // [variant][round] ticks per item
  double perNs = pcbench::tscPerNs();
  for (auto _ : state) {
    pcbench::rotatingRounds(
        n, kRounds, kSamples, ticks, [&](size_t k) { return f.variants[k].run(); }, [&](size_t k) { return f.variants[k].items; });
  }
  state.SetLabel(f.label);
  state.counters["tsc_per_ns"] = perNs;
  for (size_t k = 0; k < n; ++k) {
    double med = pcbench::median(ticks[k]);
    state.counters[f.variants[k].name + ".tsc"] = med;
    state.counters[f.variants[k].name + ".ns"] = med / perNs;
  }
  for (const auto& p : kPairs) {
    const Variant *a = f.find(p[1]), *b = f.find(p[2]);
    if (a == nullptr || b == nullptr) continue;
    pcbench::reportPairRatios(state, p[0], ticks[static_cast<size_t>(a - f.variants.data())],
                              ticks[static_cast<size_t>(b - f.variants.data())]);
  }
}

void BM_StaticKeyPairs(benchmark::State& state) {
  if (!pcbench::registerSyncCore(state)) return;
  const size_t branches = pcbench::kStaticFlipBranches;
  if (std::string e = checkFlipKey(branches); !e.empty()) return state.SkipWithError(e.c_str());
  pcbench::BusyPeer peer;
  enum { kMemb, kFlip, kKinds };
  const char* names[kKinds] = {"membarrier", "flip1000"};
  std::vector<double> perRound[kKinds];
  std::string error;
  bool enabled = false;
  auto sample = [&](int kind) -> double {
    if (kind == kMemb) {
      return pcbench::timeNs([&] {
        if (pcbench::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0 && error.empty()) error = "membarrier failed";
      });
    }
    return pcbench::timeNs([&] {
      int e = patchcall_static_key_set(&pcbench_flip_key.key, enabled ? 0 : 1);
      if (e != PATCHCALL_OK && error.empty()) error = keyError("patchcall_static_key_set", e);
      enabled = !enabled;
    });
  };
  int apart = 0, placed = 0, flips = 0;
  patchcall_static_stats before = staticStats();
  for (auto _ : state) {
    for (int r = 0; r < kFlipRounds && error.empty(); ++r) {
      for (int j = 0; j < kKinds; ++j) {
        int kind = (r + j) % kKinds;
        std::vector<double> block;
        flips += kind == kFlip ? kFlipBlock : 0;
        for (int i = 0; i < kFlipBlock; ++i) {
          block.push_back(sample(kind));
          apart += sched_getcpu() != peer.cpu() ? 1 : 0;
          ++placed;
        }
        perRound[kind].push_back(pcbench::median(block));
      }
    }
  }
  reportFlipStats(state, before, flips);
  if (enabled) patchcall_static_key_disable(&pcbench_flip_key);
  if (!error.empty()) return state.SkipWithError(error.c_str());
  for (int k = 0; k < kKinds; ++k) state.counters[std::string(names[k]) + "_ns"] = pcbench::median(perRound[k]);
  pcbench::reportPairRatios(state, "flip1000/membarrier", perRound[kFlip], perRound[kMemb]);
  state.counters["branches"] = static_cast<double>(branches);
  state.counters["peer_apart"] = placed > 0 ? static_cast<double>(apart) / placed : 0;
  if (flipBranches().jumping != 0) state.SkipWithError("after the run some branches still jump");
}

// For scripts/bench-callgrind (its filter ^BM_CallgrindCalls matches this name too): one dump
// per static variant. lat_direct, fnptr and retpoline are left out: BM_CallgrindCalls dumps them.
void BM_CallgrindCalls_Static(benchmark::State& state) {
  StaticPairsFixture& f = pairsFixture();
  if (!verified(state, f)) return;
  for (auto _ : state) {
    for (const Variant& v : f.variants) {
      if (v.name == "lat_direct" || v.name == "fnptr" || v.name == "retpoline") continue;
      std::string name = v.name + " calls=" + std::to_string(v.items * kCallgrindRuns);
      CALLGRIND_ZERO_STATS;
      for (int i = 0; i < kCallgrindRuns; ++i) benchmark::DoNotOptimize(v.run());
      CALLGRIND_DUMP_STATS_AT(name.c_str());
    }
  }
  state.counters["on_valgrind"] = RUNNING_ON_VALGRIND ? 1 : 0;
}

}  // namespace

BENCHMARK(BM_StaticCall_Inline)->UseRealTime();
BENCHMARK(BM_StaticCall_Handle)->UseRealTime();
BENCHMARK(BM_StaticCall_OutOfLine)->UseRealTime();
BENCHMARK(BM_StaticBranch_Disabled)->UseRealTime();
BENCHMARK(BM_StaticBranch_NoCheck)->UseRealTime();
BENCHMARK(BM_StaticBranch_AtomicFlag)->UseRealTime();
BENCHMARK(BM_StaticBranch_FunctionHook)->UseRealTime();
BENCHMARK(BM_StaticKey_Flip)->Arg(static_cast<int64_t>(pcbench::kStaticFlipBranches))->UseRealTime();
BENCHMARK(BM_StaticPairs)->UseRealTime()->Iterations(1);
BENCHMARK(BM_StaticKeyPairs)->UseRealTime()->Iterations(1);
BENCHMARK(BM_CallgrindCalls_Static)->UseRealTime()->Iterations(1);

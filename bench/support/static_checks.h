// patchcall benchmarks — the checks bm_static.cpp runs before timing (static_checks.cpp).
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>

#include "static_loops.h"

namespace pcbench {

inline const void* const kStaticAdd1 = reinterpret_cast<const void*>(&pcbench_add1);

// The static call: registered, targeting pcbench_add1; the inline loop's and the handle loop's
// calls are registered sites calling it, each loop then the GCC direct loop byte for byte; the
// out-of-line loops' calls are no sites and reach the trampoline, which jumps to pcbench_add1;
// the inline throughput loop has kStaticTputSlots sites. `label` describes what was found.
std::string checkStaticCall(std::string* label);
// The disabled key's two branches are NOP5s, one in each of the two disabled-branch loops.
std::string checkBranchKey();
// The flip key has `want` branches, all NOP5; enabling makes them all jumps and disabling
// makes them NOP5 again.
std::string checkFlipKey(size_t want);

// The branches of pcbench_flip_key: how many there are, and how many jump now.
struct FlipBranches {
  size_t count = 0, jumping = 0;
};
FlipBranches flipBranches();
patchcall_static_stats staticStats();
// Per-flip deltas of the AOT registry's counters since `before`: what one flip wrote and synced.
void reportFlipStats(benchmark::State& state, const patchcall_static_stats& before, double flips);
// "what: <error name>: <last error message>".
std::string keyError(const char* what, int e);

}  // namespace pcbench

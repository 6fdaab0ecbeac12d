// patchcall benchmarks — what the update benchmarks share (bm_update_*.cpp): two targets, one
// key per site form bound to a site inside an executable call loop, key batches by form and
// size, and the checks every update benchmark ends with.
#pragma once

#include <benchmark/benchmark.h>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_support.h"

namespace pcbench {

inline const void* const kTargets[2] = {reinterpret_cast<const void*>(&pcbench_add1),
                                        reinterpret_cast<const void*>(&pcbench_add2)};
// What one call of kTargets[i] adds to the accumulator.
inline uint64_t increment(const void* target) { return target == kTargets[0] ? 1 : 2; }
inline const void* otherTarget(const void* target) { return target == kTargets[0] ? kTargets[1] : kTargets[0]; }

inline long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0U, 0); }
// Registers the process for MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE; false (and the
// benchmark skipped with an error) if the kernel refuses.
bool registerSyncCore(benchmark::State& state);

// One key bound to one site of a form inside an executable call loop.
struct OneSite {
  patchcall::Key key;
  JitLoop loop = nullptr;
  const void* current = kTargets[0];
};

// `count` keys, each with one site of a form, and the two batches that point them all at
// one target or the other.
struct KeyBatch {
  std::vector<patchcall::KeyUpdate> batch[2];
};

struct UpdateFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  OneSite direct, toggle, breakpoint;
  std::map<std::pair<int, size_t>, std::unique_ptr<KeyBatch>> batches;

  UpdateFixture();
  bool makeOneSite(patchcall::SiteForm form, OneSite* out);
  // The batch of `count` keys of `form`, made on first use; nullptr (and `error`) on failure.
  KeyBatch* batchOf(patchcall::SiteForm form, size_t count);
};

// The one fixture of the process (leaked: JIT code must outlive every run).
UpdateFixture& updateFixture();
// False (and the benchmark skipped with the fixture's error) if the fixture failed.
bool ready(benchmark::State& state, const UpdateFixture& f);

// Per-iteration deltas of the runtime's own counters: proof of how many syncs an update took.
void reportStats(benchmark::State& state, const patchcall::RuntimeStats& before, const patchcall::RuntimeStats& after,
                 const char* per);
// After the timing: the site's loop must land on the key's last target.
void verifyLoop(benchmark::State& state, const OneSite& s);
// Updates `s` alternately to the two targets, one update per iteration.
bool alternate(benchmark::State& state, patchcall::Runtime& rt, OneSite& s);
// One updateBatch of the fixture's range(0) keys of `form` per iteration, alternately to the
// two targets; per-site time and sync counts as counters.
void runBatch(benchmark::State& state, patchcall::SiteForm form, const patchcall::UpdateOptions& how = {});

}  // namespace pcbench

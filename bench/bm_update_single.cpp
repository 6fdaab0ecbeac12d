// patchcall benchmarks — the cost of updating one key with one site, per site form, against
// the unit every update figure is compared with: one membarrier(PRIVATE_EXPEDITED_SYNC_CORE).
// All of them run with a BusyPeer (one other thread of this process spinning on the other
// core, as a JIT thread would), so each sync really interrupts a core.
//   BM_Membarrier_SyncCore       one membarrier(PRIVATE_EXPEDITED_SYNC_CORE)
//   BM_Update_OneSite            key with one Direct site: 2 aligned stores (site + trampoline), 1 sync
//   BM_Update_Toggle             one toggle site: rel32 store, sync, 2-byte flip, sync, plus the
//                                grace period since its previous flip (no registered threads, so
//                                that wait is short); counter excl_grace_ns leaves the wait out
//   BM_Update_Breakpoint         one unaligned site, int3 protocol: 3 syncs
//   BM_Update_MprotectFlip       the naive way, per site: mprotect RW, store rel32, mprotect RX
// Interleaved pairs (per-round ratios as counters <pair>.p50/.min/.max, support/pairs.h):
//   BM_UpdatePairs               rounds of blocks in rotating order: membarrier, one-site update,
//                                breakpoint update, toggle update with its grace period already
//                                elapsed (excl_grace); each block kBlock samples timed one by one,
//                                its median the round's figure; ratios against the same round's
//                                membarrier. excl_grace_ns is the median of all its samples.
// Batches: bm_update_batch.cpp; the shared fixture: support/update_fixture.h.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "pairs.h"
#include "update_fixture.h"

namespace {

using namespace pcbench;

void BM_Membarrier_SyncCore(benchmark::State& state) {
  if (!registerSyncCore(state)) return;
  pcbench::BusyPeer peer;
  for (auto _ : state) {
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0) {
      state.SkipWithError("membarrier(PRIVATE_EXPEDITED_SYNC_CORE) failed");
      break;
    }
  }
}

// The fixture's one-site key of a form, updated alternately to the two targets.
void runOneKey(benchmark::State& state, OneSite UpdateFixture::*site) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  if (!alternate(state, *f.rt, f.*site)) return;
  reportStats(state, before, f.rt->stats(), "update");
  verifyLoop(state, f.*site);
}

void BM_Update_OneSite(benchmark::State& state) { runOneKey(state, &UpdateFixture::direct); }
void BM_Update_Breakpoint(benchmark::State& state) { runOneKey(state, &UpdateFixture::breakpoint); }

void BM_Update_Toggle(benchmark::State& state) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  // Each update follows the previous flip immediately, so each one waits for a grace period
  // (cheap here: no thread is registered with this runtime).
  if (!alternate(state, *f.rt, f.toggle)) return;
  patchcall::RuntimeStats after = f.rt->stats();
  reportStats(state, before, after, "update");
  state.counters["grace_waits_per_update"] =
      static_cast<double>(after.toggleGraceWaits - before.toggleGraceWaits) / static_cast<double>(state.iterations());

  // The same update with its grace period already elapsed (synchronize() first, untimed):
  // the toggle protocol's own cost, two syncs and two stores.
  constexpr int kSamples = 2000;
  std::vector<double> samples;
  samples.reserve(kSamples);
  patchcall::RuntimeStats exclBefore = f.rt->stats();
  for (int i = 0; i < kSamples; ++i) {
    if (patchcall::Status s = f.rt->synchronize(); !s) return state.SkipWithError(("synchronize: " + s.toString()).c_str());
    const void* next = otherTarget(f.toggle.current);
    patchcall::Result<const void*> r = nullptr;
    samples.push_back(pcbench::timeNs([&] { r = f.rt->update(f.toggle.key, next); }));
    if (!r) return state.SkipWithError(("update: " + r.status().toString()).c_str());
    f.toggle.current = next;
  }
  patchcall::RuntimeStats exclAfter = f.rt->stats();
  state.counters["excl_grace_ns"] = pcbench::median(samples);  // median of kSamples
  state.counters["excl_grace_samples"] = kSamples;
  // Must be 0: proves the excl_grace_ns samples never waited.
  state.counters["excl_grace_waits"] = static_cast<double>(exclAfter.toggleGraceWaits - exclBefore.toggleGraceWaits);
  verifyLoop(state, f.toggle);
}

// The naive alternative: make the page writable, store, make it executable again, per site.
void BM_Update_MprotectFlip(benchmark::State& state) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return state.SkipWithError("mmap failed");
  auto* code = static_cast<uint8_t*>(mem);
  // +3: E8 rel32 (rel32 at +4, aligned, like a patchcall site); +8: ret.
  // +64: lea rax,[rdi+1]; ret.  +128: lea rax,[rdi+2]; ret.
  const uint8_t call[6] = {0xE8, 0, 0, 0, 0, 0xC3};
  const uint8_t add1[5] = {0x48, 0x8D, 0x47, 0x01, 0xC3}, add2[5] = {0x48, 0x8D, 0x47, 0x02, 0xC3};
  std::memcpy(code + 3, call, sizeof call);
  std::memcpy(code + 64, add1, sizeof add1);
  std::memcpy(code + 128, add2, sizeof add2);
  const int32_t rel[2] = {64 - 8, 128 - 8};
  std::memcpy(code + 4, &rel[0], 4);
  if (mprotect(mem, page, PROT_READ | PROT_EXEC) != 0) return state.SkipWithError("mprotect RX failed");
  auto fn = reinterpret_cast<uint64_t (*)(uint64_t)>(code + 3);
  benchmark::DoNotOptimize(fn(0));  // the page has been executed: its translation is live
  pcbench::BusyPeer peer;
  size_t i = 0;
  for (auto _ : state) {
    int32_t next = rel[++i & 1];
    if (mprotect(mem, page, PROT_READ | PROT_WRITE) != 0) return state.SkipWithError("mprotect RW failed");
    __atomic_store_n(reinterpret_cast<int32_t*>(code + 4), next, __ATOMIC_RELAXED);
    if (mprotect(mem, page, PROT_READ | PROT_EXEC) != 0) return state.SkipWithError("mprotect RX failed");
  }
  if (uint64_t got = fn(0), want = (i & 1) != 0 ? 2 : 1; got != want) {
    state.SkipWithError(("the flipped site returned " + std::to_string(got) + ", expected " + std::to_string(want)).c_str());
  }
  munmap(mem, page);
}

// ---- interleaved pairs ---------------------------------------------------------------------

constexpr int kUpdateRounds = 60, kBlock = 32;

void BM_UpdatePairs(benchmark::State& state) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  if (!registerSyncCore(state)) return;
  pcbench::BusyPeer peer;
  enum { kMemb, kOne, kBp, kToggleExcl, kKinds };
  const char* names[kKinds] = {"membarrier", "one_site", "breakpoint", "toggle_excl_grace"};
  std::vector<double> perRound[kKinds], allExcl;
  std::string error;
  patchcall::RuntimeStats before = f.rt->stats();
  auto flip = [&](OneSite& s) {
    const void* next = otherTarget(s.current);
    patchcall::Result<const void*> r = f.rt->update(s.key, next);
    if (!r && error.empty()) error = "update: " + r.status().toString();
    s.current = next;
  };
  auto sample = [&](int kind) -> double {
    switch (kind) {
      case kMemb:
        return pcbench::timeNs([&] {
          if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0 && error.empty()) error = "membarrier failed";
        });
      case kOne: return pcbench::timeNs([&] { flip(f.direct); });
      case kBp: return pcbench::timeNs([&] { flip(f.breakpoint); });
      default: {
        if (patchcall::Status s = f.rt->synchronize(); !s && error.empty()) error = "synchronize: " + s.toString();
        double ns = pcbench::timeNs([&] { flip(f.toggle); });
        allExcl.push_back(ns);
        return ns;
      }
    }
  };
  uint64_t exclWaitsBefore = 0, exclWaits = 0;
  int apart = 0, placed = 0;  // samples after which the busy peer was on another CPU
  for (auto _ : state) {
    for (int r = 0; r < kUpdateRounds && error.empty(); ++r) {
      for (int j = 0; j < kKinds; ++j) {
        int kind = (r % 2 == 0) ? (r + j) % kKinds : (r + kKinds - 1 - j) % kKinds;
        std::vector<double> block;
        if (kind == kToggleExcl) exclWaitsBefore = f.rt->stats().toggleGraceWaits;
        for (int i = 0; i < kBlock; ++i) {
          block.push_back(sample(kind));
          apart += sched_getcpu() != peer.cpu() ? 1 : 0;
          ++placed;
        }
        if (kind == kToggleExcl) exclWaits += f.rt->stats().toggleGraceWaits - exclWaitsBefore;
        perRound[kind].push_back(pcbench::median(block));
      }
    }
  }
  if (!error.empty()) return state.SkipWithError(error.c_str());
  patchcall::RuntimeStats after = f.rt->stats();
  for (int k = 0; k < kKinds; ++k) state.counters[std::string(names[k]) + "_ns"] = pcbench::median(perRound[k]);
  for (int k = kOne; k < kKinds; ++k) {
    pcbench::reportPairRatios(state, std::string(names[k]) + "/membarrier", perRound[k], perRound[kMemb]);
  }
  state.counters["excl_grace_ns"] = pcbench::median(allExcl);
  state.counters["excl_grace_samples"] = static_cast<double>(allExcl.size());
  state.counters["excl_grace_waits"] = static_cast<double>(exclWaits);  // must be 0
  state.counters["syncs"] = static_cast<double>(after.syncs - before.syncs);
  // Share of samples with the peer on another CPU: low means the syncs had no core to interrupt.
  state.counters["peer_apart"] = placed > 0 ? static_cast<double>(apart) / placed : 0;
  verifyLoop(state, f.direct);
  verifyLoop(state, f.toggle);
  verifyLoop(state, f.breakpoint);
}

}  // namespace

BENCHMARK(BM_Membarrier_SyncCore)->UseRealTime();
BENCHMARK(BM_Update_OneSite)->UseRealTime();
BENCHMARK(BM_Update_MprotectFlip)->UseRealTime();
BENCHMARK(BM_Update_Toggle)->UseRealTime();
BENCHMARK(BM_Update_Breakpoint)->UseRealTime();
BENCHMARK(BM_UpdatePairs)->UseRealTime()->Iterations(1);

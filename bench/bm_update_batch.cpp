// patchcall benchmarks — the cost of updating many keys with one updateBatch (one set of
// syncs for the whole batch), against updating them one by one and against the naive
// mprotect flip. All of them run with a BusyPeer, as the single-key updates do
// (bm_update_single.cpp; the shared fixture: support/update_fixture.h).
//   BM_Update_Batch/N            N keys, one Direct site each, one updateBatch: 2N stores, 1 sync
//   BM_Update_Batch_Breakpoint/N N unaligned sites: 3 syncs per batch
// Interleaved pairs (per-round ratios as counters <pair>.p50/.min/.max, support/pairs.h):
//   BM_BatchPairs                per round: updateBatch of 10,000 keys (median of 3), the same
//                                10,000 keys updated one by one (10,000 update() calls), and the
//                                mprotect flip (RW, store, RX) of each of 10,000 sites: measured
//                                baselines for the batch row
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "pairs.h"
#include "update_fixture.h"

namespace {

using namespace pcbench;
using patchcall::KeyUpdate;
using patchcall::SiteForm;

void BM_Update_Batch(benchmark::State& state) { runBatch(state, SiteForm::kDirect); }
void BM_Update_Batch_Breakpoint(benchmark::State& state) { runBatch(state, SiteForm::kBreakpoint); }

// 10,000 call sites in plain memory, each flipped the naive way: mprotect its page RW, store
// the rel32, mprotect it RX.
struct MprotectSites {
  static constexpr size_t kSiteBytes = 8;
  uint8_t* mem = nullptr;
  size_t bytes = 0, page = 0, count = 0;
  explicit MprotectSites(size_t n) : count(n) {
    page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    bytes = (n * kSiteBytes + page) / page * page;
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    mem = static_cast<uint8_t*>(m);
    std::memset(mem, 0xCC, bytes);
    for (size_t i = 0; i < n; ++i) mem[i * kSiteBytes + 3] = 0xE8;  // E8 at +3: rel32 aligned at +4
    if (mprotect(mem, bytes, PROT_READ | PROT_EXEC) != 0) mem = nullptr;
  }
  // Every site's rel32 := value; false if mprotect failed.
  bool flipAll(int32_t value) {
    for (size_t i = 0; i < count; ++i) {
      uint8_t* site = mem + i * kSiteBytes;
      auto* pg = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(site) & ~(page - 1));
      if (mprotect(pg, page, PROT_READ | PROT_WRITE) != 0) return false;
      __atomic_store_n(reinterpret_cast<int32_t*>(site + 4), value, __ATOMIC_RELAXED);
      if (mprotect(pg, page, PROT_READ | PROT_EXEC) != 0) return false;
    }
    return true;
  }
};

constexpr int kBatchRounds = 5;

void BM_BatchPairs(benchmark::State& state) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  constexpr size_t kCount = 10000;
  KeyBatch* b = f.batchOf(SiteForm::kDirect, kCount);
  if (b == nullptr) return state.SkipWithError(f.error.c_str());
  static MprotectSites* naive = new MprotectSites(kCount);
  if (naive->mem == nullptr) return state.SkipWithError("mmap/mprotect of the naive sites failed");
  pcbench::BusyPeer peer;
  std::vector<double> batchNs, singlesNs, mprotectNs;
  std::string error;
  auto batch = [&](int which) {
    return pcbench::timeNs([&] {
      if (patchcall::Status s = f.rt->updateBatch(b->batch[which]); !s && error.empty()) error = "updateBatch: " + s.toString();
    });
  };
  for (auto _ : state) {
    for (int r = 0; r < kBatchRounds && error.empty(); ++r) {
      // The keys start at kTargets[0] (batch[1]'s targets) each round and end there.
      auto singles = [&] {
        singlesNs.push_back(pcbench::timeNs([&] {
          for (const KeyUpdate& u : b->batch[0]) {
            if (patchcall::Result<const void*> x = f.rt->update(u.key, u.target); !x && error.empty()) {
              error = "update: " + x.status().toString();
            }
          }
        }));
      };
      auto flips = [&] {
        mprotectNs.push_back(pcbench::timeNs([&] {
          if (!naive->flipAll(r % 2 == 0 ? 64 : 128) && error.empty()) error = "mprotect failed";
        }));
      };
      std::vector<double> batches;
      batches.push_back(batch(0));
      batches.push_back(batch(1));
      if (r % 2 == 0) {
        singles();
        batches.push_back(batch(1));
        flips();
      } else {
        flips();
        singles();
        batches.push_back(batch(1));
      }
      batchNs.push_back(pcbench::median(batches));
    }
  }
  if (!error.empty()) return state.SkipWithError(error.c_str());
  state.counters["sites"] = kCount;
  state.counters["batch_ns"] = pcbench::median(batchNs);
  state.counters["singles_ns"] = pcbench::median(singlesNs);
  state.counters["mprotect_ns"] = pcbench::median(mprotectNs);
  pcbench::reportPairRatios(state, "batch/singles", batchNs, singlesNs);
  pcbench::reportPairRatios(state, "batch/mprotect", batchNs, mprotectNs);
}

}  // namespace

BENCHMARK(BM_Update_Batch)->Arg(1)->Arg(100)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Update_Batch_Breakpoint)->Arg(10000)->UseRealTime();
BENCHMARK(BM_BatchPairs)->UseRealTime()->Iterations(1);

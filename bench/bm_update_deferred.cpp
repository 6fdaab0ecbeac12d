// patchcall benchmarks — deferred publication and shared syncs (UpdateOptions::publish,
// Runtime::publish, group commit), against one membarrier(PRIVATE_EXPEDITED_SYNC_CORE). All
// with a BusyPeer, as the other update benchmarks (support/update_fixture.h). The runtime has
// no background reclaimer, so nothing publishes behind a benchmark's back.
//   BM_Update_Deferred           one Direct site, deferred: 2 stores, no sync
//   BM_Update_Deferred_Batch/N   N keys with one Direct site each, one deferred updateBatch
//                                (per-site time in the ns_per_site counter)
//   BM_Publish                   one deferred update, then publish(): one sync
//   BM_Update_Concurrent         immediate Direct updates of distinct keys from 1, 2 or 4
//                                threads: counter syncs_per_update (shared syncs), items/s
// Interleaved pairs (per-round ratios as counters <pair>.p50/.min/.max, support/pairs.h):
//   BM_PublishPairs              per round, blocks in rotating order: membarrier, deferred
//                                one-site update, publish after one deferred update (the update
//                                untimed), deferred batch of 10,000 keys (per site)
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "pairs.h"
#include "update_fixture.h"

namespace {

using namespace pcbench;
using patchcall::KeyUpdate;
using patchcall::Publish;
using patchcall::SiteForm;
using patchcall::UpdateOptions;

const UpdateOptions kDeferred{.strict = false, .deadline = std::nullopt, .publish = Publish::kDeferred};

bool flipDeferred(patchcall::Runtime& rt, OneSite& s, std::string* error) {
  const void* next = otherTarget(s.current);
  patchcall::Result<const void*> r = rt.update(s.key, next, kDeferred);
  if (!r) {
    if (error->empty()) *error = "update: " + r.status().toString();
    return false;
  }
  s.current = next;
  return true;
}

// One deferred update of the Direct site per iteration, and with `publishEach` a publish()
// after it; the last update is published before the loop is checked.
void runDeferred(benchmark::State& state, bool publishEach) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  std::string error;
  for (auto _ : state) {
    if (!flipDeferred(*f.rt, f.direct, &error)) return state.SkipWithError(error.c_str());
    if (patchcall::Status s = publishEach ? f.rt->publish() : patchcall::Status::ok(); !s) {
      return state.SkipWithError(("publish: " + s.toString()).c_str());
    }
  }
  reportStats(state, before, f.rt->stats(), publishEach ? "publish" : "update");
  if (patchcall::Status s = f.rt->publish(); !s) return state.SkipWithError(("publish: " + s.toString()).c_str());
  verifyLoop(state, f.direct);
}

void BM_Update_Deferred(benchmark::State& state) { runDeferred(state, false); }
void BM_Update_Deferred_Batch(benchmark::State& state) {
  runBatch(state, SiteForm::kDirect, kDeferred);
  (void)updateFixture().rt->publish();
}
void BM_Publish(benchmark::State& state) { runDeferred(state, true); }

// Distinct keys, one per thread (the first 4 keys of the fixture's 4-key Direct batch).
std::atomic<uint64_t> gConcurrentSyncs{0}, gConcurrentUpdates{0};
std::atomic<int> gConcurrentDone{0};

void BM_Update_Concurrent(benchmark::State& state) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  KeyBatch* b = f.batchOf(SiteForm::kDirect, 4);
  if (b == nullptr) return state.SkipWithError(f.error.c_str());
  std::unique_ptr<pcbench::BusyPeer> peer;
  if (state.thread_index() == 0) {
    peer = std::make_unique<pcbench::BusyPeer>();
    gConcurrentSyncs = f.rt->stats().syncs;
    gConcurrentUpdates = 0;
    gConcurrentDone = 0;
  }
  patchcall::Key key = b->batch[0][static_cast<size_t>(state.thread_index())].key;
  size_t i = 0;
  for (auto _ : state) {
    if (patchcall::Result<const void*> r = f.rt->update(key, kTargets[++i & 1]); !r) {
      return state.SkipWithError(("update: " + r.status().toString()).c_str());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  gConcurrentUpdates.fetch_add(state.iterations());
  // The last thread to finish reports for all (counters are summed over threads).
  double perUpdate = 0;
  if (gConcurrentDone.fetch_add(1) + 1 == state.threads()) {
    perUpdate = static_cast<double>(f.rt->stats().syncs - gConcurrentSyncs.load()) /
                static_cast<double>(gConcurrentUpdates.load());
  }
  state.counters["syncs_per_update"] = perUpdate;
}

// ---- interleaved pairs ---------------------------------------------------------------------

constexpr int kRounds = 40, kBlock = 32, kBatchBlock = 3;
constexpr size_t kBatch = 10000;

void BM_PublishPairs(benchmark::State& state) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  if (!registerSyncCore(state)) return;
  KeyBatch* b = f.batchOf(SiteForm::kDirect, kBatch);
  if (b == nullptr) return state.SkipWithError(f.error.c_str());
  pcbench::BusyPeer peer;
  enum { kMemb, kDeferredOne, kPublishOne, kBatchSite, kKinds };
  const char* names[kKinds] = {"membarrier", "deferred", "publish", "deferred_batch_site"};
  std::vector<double> perRound[kKinds];
  std::string error;
  size_t batchFlip = 0;
  auto sample = [&](int kind) -> double {
    switch (kind) {
      case kMemb:
        return pcbench::timeNs([&] {
          if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0 && error.empty()) error = "membarrier failed";
        });
      case kDeferredOne: return pcbench::timeNs([&] { (void)flipDeferred(*f.rt, f.direct, &error); });
      case kPublishOne: {
        (void)flipDeferred(*f.rt, f.direct, &error);
        return pcbench::timeNs([&] {
          if (patchcall::Status s = f.rt->publish(); !s && error.empty()) error = "publish: " + s.toString();
        });
      }
      default:
        return pcbench::timeNs([&] {
                 if (patchcall::Status s = f.rt->updateBatch(b->batch[batchFlip++ & 1], kDeferred); !s && error.empty()) {
                   error = "updateBatch: " + s.toString();
                 }
               }) /
               static_cast<double>(kBatch);
    }
  };
  for (auto _ : state) {
    for (int r = 0; r < kRounds && error.empty(); ++r) {
      for (int j = 0; j < kKinds; ++j) {
        int kind = (r % 2 == 0) ? (r + j) % kKinds : (r + kKinds - 1 - j) % kKinds;
        std::vector<double> block;
        int n = kind == kBatchSite ? kBatchBlock : kBlock;
        for (int i = 0; i < n; ++i) block.push_back(sample(kind));
        perRound[kind].push_back(pcbench::median(block));
        if (patchcall::Status s = f.rt->publish(); !s && error.empty()) error = "publish: " + s.toString();  // untimed
      }
    }
  }
  if (!error.empty()) return state.SkipWithError(error.c_str());
  for (int k = 0; k < kKinds; ++k) state.counters[std::string(names[k]) + "_ns"] = pcbench::median(perRound[k]);
  pcbench::reportPairRatios(state, "deferred/membarrier", perRound[kDeferredOne], perRound[kMemb]);
  pcbench::reportPairRatios(state, "publish/membarrier", perRound[kPublishOne], perRound[kMemb]);
  verifyLoop(state, f.direct);
}

}  // namespace

BENCHMARK(BM_Update_Deferred)->UseRealTime();
BENCHMARK(BM_Update_Deferred_Batch)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Publish)->UseRealTime();
BENCHMARK(BM_Update_Concurrent)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();
BENCHMARK(BM_PublishPairs)->Iterations(1)->UseRealTime();

// patchcall benchmarks — the cost of retargeting (issues 2 and 4).
//
// An update's cost is its cross-core syncs: BM_Membarrier_SyncCore is one
// membarrier(PRIVATE_EXPEDITED_SYNC_CORE), the unit every update figure is compared with.
// All benchmarks here run with a BusyPeer (one other thread of this process spinning on the
// other core, as a JIT thread would), so each sync really interrupts a core.
//   BM_Update_OneSite            key with one Direct site: 2 aligned stores (site + trampoline), 1 sync
//   BM_Update_Batch/N            N keys, one Direct site each, one updateBatch: 2N stores, 1 sync
//   BM_Update_MprotectFlip       the naive way, per site: mprotect RW, store rel32, mprotect RX
//   BM_Update_Toggle             one toggle site: rel32 store, sync, 2-byte flip, sync, plus the
//                                grace period since its previous flip (no registered threads, so
//                                that wait is short); counter excl_grace_ns leaves the wait out
//   BM_Update_Breakpoint         one unaligned site, int3 protocol: 3 syncs
//   BM_Update_Batch_Breakpoint/N N unaligned sites: 3 syncs per batch
//   BM_Registry_BytesPerSite     registry metadata per site with 1,000,000 sites over 1,000 keys
// Interleaved pairs (issue 12; per-round ratios as counters <pair>.p50/.min/.max, pairs.h):
//   BM_UpdatePairs               rounds of blocks in rotating order: membarrier, one-site update,
//                                breakpoint update, toggle update with its grace period already
//                                elapsed (excl_grace); each block kBlock samples timed one by one,
//                                its median the round's figure; ratios against the same round's
//                                membarrier. excl_grace_ns is the median of all its samples.
//   BM_BatchPairs                per round: updateBatch of 10,000 keys (median of 3), the same
//                                10,000 keys updated one by one (10,000 update() calls), and the
//                                mprotect flip (RW, store, RX) of each of 10,000 sites: measured
//                                baselines for the batch row
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_support.h"
#include "pairs.h"

namespace {

using patchcall::Key;
using patchcall::KeyUpdate;
using patchcall::Runtime;
using patchcall::SiteForm;
using pcbench::JitLoop;
using pcbench::kCallsPerLoop;

const void* const kTargets[2] = {reinterpret_cast<const void*>(&pcbench_add1),
                                 reinterpret_cast<const void*>(&pcbench_add2)};
uint64_t increment(const void* target) { return target == kTargets[0] ? 1 : 2; }

long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0U, 0); }

// One key bound to one site of `form` inside an executable call loop.
struct OneSite {
  Key key;
  JitLoop loop = nullptr;
  const void* current = kTargets[0];
};

// `count` keys, each with one site of `form`, and the two batches that point them all at
// one target or the other.
struct KeyBatch {
  std::vector<KeyUpdate> batch[2];
};

struct UpdateFixture {
  std::string error;
  Runtime* rt = nullptr;
  OneSite direct, toggle, breakpoint;
  std::map<std::pair<int, size_t>, std::unique_ptr<KeyBatch>> batches;

  UpdateFixture() {
    rt = pcbench::newRuntime(&error);
    if (rt == nullptr) return;
    if (!makeOneSite(SiteForm::kDirect, &direct) || !makeOneSite(SiteForm::kToggle, &toggle)) return;
    makeOneSite(SiteForm::kBreakpoint, &breakpoint);
  }

  bool makeOneSite(SiteForm form, OneSite* out) {
    patchcall::Result<Key> key = rt->createKey(kTargets[0], "bench.update.one");
    if (!key) return error = key.status().toString(), false;
    out->key = *key;
    out->loop = pcbench::buildCallLoop(
        *rt,
        [&](patchcall::jit::Assembler& a) {
          // The breakpoint protocol is for sites one store cannot patch: make this one unaligned.
          if (form == SiteForm::kBreakpoint && (a.offset() + 1) % 4 == 0) a.nop();
          return patchcall::jit::emitCall(a, *key, form);
        },
        &error);
    return out->loop != nullptr;
  }

  KeyBatch* batchOf(SiteForm form, size_t count) {
    std::unique_ptr<KeyBatch>& slot = batches[{static_cast<int>(form), count}];
    if (slot) return slot.get();
    auto b = std::make_unique<KeyBatch>();
    std::vector<Key> keys;
    for (size_t i = 0; i < count; ++i) {
      patchcall::Result<Key> key = rt->createKey(kTargets[0]);
      if (!key) return error = key.status().toString(), nullptr;
      keys.push_back(*key);
      b->batch[0].push_back({*key, kTargets[1]});
      b->batch[1].push_back({*key, kTargets[0]});
    }
    if (!pcbench::emitSiteBlob(*rt, keys.data(), keys.size(), count, form, &error)) return nullptr;
    slot = std::move(b);
    return slot.get();
  }
};

UpdateFixture& fixture() {
  static UpdateFixture* f = new UpdateFixture();  // leaked: JIT code must outlive every run
  return *f;
}

bool ready(benchmark::State& state, const UpdateFixture& f) {
  if (f.error.empty()) return true;
  state.SkipWithError(f.error.c_str());
  return false;
}

// Per-iteration deltas of the runtime's own counters: proof of how many syncs an update took.
void reportStats(benchmark::State& state, const patchcall::RuntimeStats& before, const patchcall::RuntimeStats& after,
                 const char* per) {
  auto n = static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  state.counters[std::string("syncs_per_") + per] = static_cast<double>(after.syncs - before.syncs) / n;
  state.counters[std::string("site_writes_per_") + per] = static_cast<double>(after.siteWrites - before.siteWrites) / n;
}

// After the timing: the site's loop must land on the key's last target.
void verifyLoop(benchmark::State& state, const OneSite& s) {
  uint64_t want = kCallsPerLoop * increment(s.current), got = s.loop(kCallsPerLoop);
  if (got != want) {
    state.SkipWithError(("after the updates the site's loop returned " + std::to_string(got) + ", expected " +
                         std::to_string(want) + ": the site does not call the key's current target")
                            .c_str());
  }
}

// Updates `s` alternately to the two targets, one update per iteration.
bool alternate(benchmark::State& state, Runtime& rt, OneSite& s) {
  for (auto _ : state) {
    const void* next = s.current == kTargets[0] ? kTargets[1] : kTargets[0];
    patchcall::Result<const void*> r = rt.update(s.key, next);
    if (!r) {
      state.SkipWithError(("update: " + r.status().toString()).c_str());
      return false;
    }
    s.current = next;
  }
  return true;
}

void BM_Membarrier_SyncCore(benchmark::State& state) {
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) != 0) {
    return state.SkipWithError("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) refused by the kernel");
  }
  pcbench::BusyPeer peer;
  for (auto _ : state) {
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0) {
      state.SkipWithError("membarrier(PRIVATE_EXPEDITED_SYNC_CORE) failed");
      break;
    }
  }
}

void BM_Update_OneSite(benchmark::State& state) {
  UpdateFixture& f = fixture();
  if (!ready(state, f)) return;
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  if (!alternate(state, *f.rt, f.direct)) return;
  reportStats(state, before, f.rt->stats(), "update");
  verifyLoop(state, f.direct);
}

void runBatch(benchmark::State& state, SiteForm form) {
  UpdateFixture& f = fixture();
  if (!ready(state, f)) return;
  auto count = static_cast<size_t>(state.range(0));
  KeyBatch* b = f.batchOf(form, count);
  if (b == nullptr) return state.SkipWithError(f.error.c_str());
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  size_t i = 0;
  pcbench::LoopClock clock;
  for (auto _ : state) {
    patchcall::Status s = f.rt->updateBatch(b->batch[i++ & 1]);
    if (!s) {
      state.SkipWithError(("updateBatch: " + s.toString()).c_str());
      return;
    }
  }
  pcbench::reportPerSite(state, clock, count);
  reportStats(state, before, f.rt->stats(), "batch");
}

void BM_Update_Batch(benchmark::State& state) { runBatch(state, SiteForm::kDirect); }
void BM_Update_Batch_Breakpoint(benchmark::State& state) { runBatch(state, SiteForm::kBreakpoint); }
void BM_Update_Breakpoint(benchmark::State& state) {
  UpdateFixture& f = fixture();
  if (!ready(state, f)) return;
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  if (!alternate(state, *f.rt, f.breakpoint)) return;
  reportStats(state, before, f.rt->stats(), "update");
  verifyLoop(state, f.breakpoint);
}

void BM_Update_Toggle(benchmark::State& state) {
  UpdateFixture& f = fixture();
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
    const void* next = kTargets[(f.toggle.current == kTargets[0]) ? 1 : 0];
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

// Registry metadata per site at scale: 1,000,000 Direct sites over 1,000 keys (100 blobs).
struct ScaleFixture {
  static constexpr size_t kKeys = 1000, kBlobs = 100, kSitesPerBlob = 10000;
  std::string error;
  Runtime* rt = nullptr;
  ScaleFixture() {
    rt = pcbench::newRuntime(&error, size_t{64} << 20);
    if (rt == nullptr) return;
    std::vector<Key> keys;
    for (size_t i = 0; i < kKeys; ++i) {
      patchcall::Result<Key> key = rt->createKey(kTargets[0]);
      if (!key) {
        error = key.status().toString();
        return;
      }
      keys.push_back(*key);
    }
    for (size_t b = 0; b < kBlobs; ++b) {
      if (!pcbench::emitSiteBlob(*rt, keys.data(), keys.size(), kSitesPerBlob, SiteForm::kDirect, &error)) return;
    }
  }
};

void BM_Registry_BytesPerSite(benchmark::State& state) {
  static ScaleFixture* f = new ScaleFixture();
  if (!f->error.empty()) return state.SkipWithError(f->error.c_str());
  patchcall::RuntimeStats s;
  for (auto _ : state) {
    s = f->rt->stats();  // timed: what a stats() call costs with a million sites
    benchmark::DoNotOptimize(s);
  }
  if (s.sites != ScaleFixture::kBlobs * ScaleFixture::kSitesPerBlob) {
    return state.SkipWithError(("stats().sites is " + std::to_string(s.sites) + ", expected 1000000").c_str());
  }
  state.counters["sites"] = static_cast<double>(s.sites);
  state.counters["bytes_per_site"] = static_cast<double>(s.siteMetadataBytes) / static_cast<double>(s.sites);
}

// ---- interleaved pairs (issue 12) ------------------------------------------------------------

constexpr int kUpdateRounds = 60, kBlock = 32;

void BM_UpdatePairs(benchmark::State& state) {
  UpdateFixture& f = fixture();
  if (!ready(state, f)) return;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) != 0) {
    return state.SkipWithError("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) refused by the kernel");
  }
  pcbench::BusyPeer peer;
  enum { kMemb, kOne, kBp, kToggleExcl, kKinds };
  const char* names[kKinds] = {"membarrier", "one_site", "breakpoint", "toggle_excl_grace"};
  std::vector<double> perRound[kKinds], allExcl;
  std::string error;
  patchcall::RuntimeStats before = f.rt->stats();
  auto flip = [&](OneSite& s) {
    const void* next = s.current == kTargets[0] ? kTargets[1] : kTargets[0];
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
  UpdateFixture& f = fixture();
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

BENCHMARK(BM_Membarrier_SyncCore)->UseRealTime();
BENCHMARK(BM_Update_OneSite)->UseRealTime();
BENCHMARK(BM_Update_Batch)->Arg(1)->Arg(100)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Update_MprotectFlip)->UseRealTime();
BENCHMARK(BM_Update_Toggle)->UseRealTime();
BENCHMARK(BM_Update_Breakpoint)->UseRealTime();
BENCHMARK(BM_Update_Batch_Breakpoint)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Registry_BytesPerSite)->UseRealTime()->Iterations(20);
BENCHMARK(BM_UpdatePairs)->UseRealTime()->Iterations(1);
BENCHMARK(BM_BatchPairs)->UseRealTime()->Iterations(1);

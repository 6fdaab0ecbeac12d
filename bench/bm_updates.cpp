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
  constexpr int kSamples = 64;
  std::chrono::nanoseconds total{0};
  patchcall::RuntimeStats exclBefore = f.rt->stats();
  for (int i = 0; i < kSamples; ++i) {
    if (patchcall::Status s = f.rt->synchronize(); !s) return state.SkipWithError(("synchronize: " + s.toString()).c_str());
    const void* next = kTargets[(f.toggle.current == kTargets[0]) ? 1 : 0];
    auto t0 = std::chrono::steady_clock::now();
    patchcall::Result<const void*> r = f.rt->update(f.toggle.key, next);
    total += std::chrono::steady_clock::now() - t0;
    if (!r) return state.SkipWithError(("update: " + r.status().toString()).c_str());
    f.toggle.current = next;
  }
  patchcall::RuntimeStats exclAfter = f.rt->stats();
  state.counters["excl_grace_ns"] = static_cast<double>(total.count()) / kSamples;
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

}  // namespace

BENCHMARK(BM_Membarrier_SyncCore)->UseRealTime();
BENCHMARK(BM_Update_OneSite)->UseRealTime();
BENCHMARK(BM_Update_Batch)->Arg(1)->Arg(100)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Update_MprotectFlip)->UseRealTime();
BENCHMARK(BM_Update_Toggle)->UseRealTime();
BENCHMARK(BM_Update_Breakpoint)->UseRealTime();
BENCHMARK(BM_Update_Batch_Breakpoint)->Arg(10000)->UseRealTime();
BENCHMARK(BM_Registry_BytesPerSite)->UseRealTime()->Iterations(20);

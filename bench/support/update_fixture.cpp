// patchcall benchmarks — the update benchmarks' shared fixture (update_fixture.h).
#include "update_fixture.h"

#include <algorithm>

namespace pcbench {

using patchcall::Key;
using patchcall::SiteForm;

bool registerSyncCore(benchmark::State& state) {
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0) return true;
  state.SkipWithError("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) refused by the kernel");
  return false;
}

UpdateFixture::UpdateFixture() {
  rt = newRuntime(&error);
  if (rt == nullptr) return;
  if (!makeOneSite(SiteForm::kDirect, &direct) || !makeOneSite(SiteForm::kToggle, &toggle)) return;
  makeOneSite(SiteForm::kBreakpoint, &breakpoint);
}

bool UpdateFixture::makeOneSite(SiteForm form, OneSite* out) {
  patchcall::Result<Key> key = rt->createKey(kTargets[0], "bench.update.one");
  if (!key) return error = key.status().toString(), false;
  out->key = *key;
  out->loop = buildCallLoop(
      *rt,
      [&](patchcall::jit::Assembler& a) {
        // The breakpoint protocol is for sites one store cannot patch: make this one unaligned.
        if (form == SiteForm::kBreakpoint && (a.offset() + 1) % 4 == 0) a.nop();
        return patchcall::jit::emitCall(a, *key, form);
      },
      &error);
  return out->loop != nullptr;
}

KeyBatch* UpdateFixture::batchOf(SiteForm form, size_t count) {
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
  if (!emitSiteBlob(*rt, keys.data(), keys.size(), count, form, &error)) return nullptr;
  slot = std::move(b);
  return slot.get();
}

UpdateFixture& updateFixture() {
  static UpdateFixture* f = new UpdateFixture();  // leaked: JIT code must outlive every run
  return *f;
}

bool ready(benchmark::State& state, const UpdateFixture& f) {
  if (f.error.empty()) return true;
  state.SkipWithError(f.error.c_str());
  return false;
}

void reportStats(benchmark::State& state, const patchcall::RuntimeStats& before, const patchcall::RuntimeStats& after,
                 const char* per) {
  auto n = static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  state.counters[std::string("syncs_per_") + per] = static_cast<double>(after.syncs - before.syncs) / n;
  state.counters[std::string("site_writes_per_") + per] = static_cast<double>(after.siteWrites - before.siteWrites) / n;
}

void verifyLoop(benchmark::State& state, const OneSite& s) {
  uint64_t want = kCallsPerLoop * increment(s.current), got = s.loop(kCallsPerLoop);
  if (got != want) {
    state.SkipWithError(("after the updates the site's loop returned " + std::to_string(got) + ", expected " +
                         std::to_string(want) + ": the site does not call the key's current target")
                            .c_str());
  }
}

bool alternate(benchmark::State& state, patchcall::Runtime& rt, OneSite& s) {
  for (auto _ : state) {
    const void* next = otherTarget(s.current);
    patchcall::Result<const void*> r = rt.update(s.key, next);
    if (!r) {
      state.SkipWithError(("update: " + r.status().toString()).c_str());
      return false;
    }
    s.current = next;
  }
  return true;
}

void runBatch(benchmark::State& state, patchcall::SiteForm form, const patchcall::UpdateOptions& how) {
  UpdateFixture& f = updateFixture();
  if (!ready(state, f)) return;
  auto count = static_cast<size_t>(state.range(0));
  KeyBatch* b = f.batchOf(form, count);
  if (b == nullptr) return state.SkipWithError(f.error.c_str());
  pcbench::BusyPeer peer;
  patchcall::RuntimeStats before = f.rt->stats();
  size_t i = 0;
  pcbench::LoopClock clock;
  for (auto _ : state) {
    if (patchcall::Status s = f.rt->updateBatch(b->batch[i++ & 1], how); !s) {
      return state.SkipWithError(("updateBatch: " + s.toString()).c_str());
    }
  }
  pcbench::reportPerSite(state, clock, count);
  reportStats(state, before, f.rt->stats(), "batch");
}

}  // namespace pcbench

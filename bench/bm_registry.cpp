// patchcall benchmarks — the site registry at scale: metadata per site with 1,000,000 Direct
// sites over 1,000 keys, and what a stats() call costs with that many sites.
//   BM_Registry_BytesPerSite     counters sites and bytes_per_site (the goal: <= 32 bytes)
#include <string>
#include <vector>

#include "update_fixture.h"

namespace {

using patchcall::Key;
using patchcall::Runtime;
using patchcall::SiteForm;
using pcbench::kTargets;

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

BENCHMARK(BM_Registry_BytesPerSite)->UseRealTime()->Iterations(20);

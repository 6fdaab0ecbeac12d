// Scale: 1,000,000 Direct sites over 1,000 keys, registered, retargeted in ONE updateBatch,
// sampled with the disassembler; the registry's metadata must stay <= 32 bytes per site.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "emulation.h"
#include "disasm.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kKeys = 1000;
constexpr size_t kBlobs = 4;
// 1,000,000 (PATCHCALL_TEST_SCALE: under qemu a tenth), a multiple of kKeys * kBlobs.
const size_t kSites = test::scaled<size_t>(1000000, kKeys * kBlobs) / (kKeys * kBlobs) * (kKeys * kBlobs);
constexpr double kMaxBytesPerSite = 32;

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

using test::installReturner;

TEST(Scale, MillionSitesThousandKeysOneBatch) {
  Result<Runtime> r = Runtime::create();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  const void* before[2] = {installReturner(rt, 1), installReturner(rt, 2)};
  const void* after[2] = {installReturner(rt, 3), installReturner(rt, 4)};
  std::vector<Key> keys;
  for (size_t k = 0; k < kKeys; ++k) {
    Result<Key> key = rt.createKey(before[k % 2]);
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    keys.push_back(*key);
  }

  // Site i is bound to key i % kKeys; kBlobs blobs of kSites / kBlobs sites each.
  Clock::time_point t = Clock::now();
  std::vector<const uint8_t*> sites;
  sites.reserve(kSites);
  size_t codeBytes = 0;
  for (size_t b = 0; b < kBlobs; ++b) {
    jit::Assembler a(rt);
    for (size_t i = 0; i < kSites / kBlobs; ++i) {
      Status s = jit::emitCall(a, keys[(b * (kSites / kBlobs) + i) % kKeys]);
      ASSERT_TRUE(s.isOk()) << s.toString();
    }
    test::emitRet(a);
    std::vector<SiteSpec> specs = a.sites();
    Result<Blob> blob = jit::install(a);
    ASSERT_TRUE(blob.isOk()) << blob.status().toString();
    codeBytes += blob->size;
    for (const SiteSpec& s : specs) sites.push_back(static_cast<const uint8_t*>(blob->code) + s.offset);
  }
  double emitMs = msSince(t);
  ASSERT_EQ(sites.size(), kSites);
  RuntimeStats registered = rt.stats();
  ASSERT_EQ(registered.sites, kSites);

  std::vector<KeyUpdate> batch;
  for (size_t k = 0; k < kKeys; ++k) batch.push_back({keys[k], after[k % 2]});
  t = Clock::now();
  Status s = rt.updateBatch(batch);
  double batchMs = msSince(t);
  ASSERT_TRUE(s.isOk()) << s.toString();
  RuntimeStats updated = rt.stats();
  EXPECT_EQ(updated.syncs - registered.syncs, 1u) << "one cross-core sync for the whole batch";
  EXPECT_EQ(updated.updates - registered.updates, kKeys);

  // Every site is decoded; the registry is asked about a sample (every 997th, and the last).
  size_t checked = 0, bad = 0;
  auto check = [&](size_t i, bool askRegistry) {
    const void* want = after[(i % kKeys) % 2];
    test::Decoded d = test::decodeAt(sites[i]);
    bool good = d.isDirectCall && (reinterpret_cast<uintptr_t>(sites[i]) + test::callFieldOffset()) % 4 == 0 &&
                d.target == reinterpret_cast<uint64_t>(want);
    if (!good && bad++ < 5) {
      ADD_FAILURE() << "site #" << i << " at " << static_cast<const void*>(sites[i]) << " decodes as '" << d.text
                    << "', expected a call to " << want;
    }
    if (!askRegistry) return;
    Result<SiteInfo> info = rt.site(sites[i]);
    if (!info.isOk() || info->key != keys[i % kKeys] || info->target != want) {
      if (bad++ < 5) ADD_FAILURE() << "site #" << i << ": registry disagrees";
    }
    ++checked;
  };
  t = Clock::now();
  for (size_t i = 0; i < kSites; ++i) check(i, i % 997 == 0 || i == kSites - 1);
  double decodeMs = msSince(t);
  EXPECT_EQ(bad, 0u);

  double bytesPerSite = static_cast<double>(updated.siteMetadataBytes) / static_cast<double>(updated.sites);
  std::printf("scale: %zu sites / %zu keys in %zu blobs (%.1f MiB code): emit+install %.0f ms, "
              "updateBatch %.1f ms (%.1f ns/site), all decoded in %.0f ms, %zu asked of the registry, "
              "bytes_per_site %.2f\n",
              kSites, kKeys, kBlobs, static_cast<double>(codeBytes) / (1 << 20), emitMs, batchMs,
              1e6 * batchMs / kSites, decodeMs, checked, bytesPerSite);
  RecordProperty("bytes_per_site", std::to_string(bytesPerSite));
  EXPECT_LE(bytesPerSite, kMaxBytesPerSite) << "siteMetadataBytes " << updated.siteMetadataBytes << " for "
                                            << updated.sites << " sites";
}

}  // namespace
}  // namespace patchcall

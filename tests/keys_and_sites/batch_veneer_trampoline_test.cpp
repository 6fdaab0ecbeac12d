// Batches (10,000 sites retargeted with one cross-core sync), the veneer path for targets
// beyond rel32 reach, and the trampoline path (C++ calling through a StaticCall).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "isa.h"
#include "disasm.h"
#include "far_code.h"
#include "jit_targets.h"
#include "patchcall/jit.h"
#include "patchcall/static_call.h"

namespace patchcall {
namespace {

using test::Decoded;
using test::decodeAt;
using Clock = std::chrono::steady_clock;

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

Result<Runtime> makeRuntime(Options o = {}) { return Runtime::create(std::move(o)); }

using test::installReturner;

// `enter ; call <site> ; leave ; ret`, returning the blob; the site is sites()[0].
struct Caller {
  Blob blob;
  const uint8_t* site = nullptr;
  int operator()() const { return reinterpret_cast<int (*)()>(blob.code)(); }
};
Caller installCaller(Runtime& rt, Key key) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  EXPECT_TRUE(jit::emitCall(a, key).isOk());
  test::emitLeave(a);
  test::emitRet(a);
  uint32_t offset = a.sites().at(0).offset;
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  if (!b.isOk()) return {};
  return Caller{*b, static_cast<const uint8_t*>(b->code) + offset};
}

// Checks one Direct site against its key; returns false (and reports) on a mismatch.
bool checkDirectSite(Runtime& rt, const uint8_t* site, Key key, size_t index) {
  const void* target = rt.target(key).value();
  Decoded d = decodeAt(site);
  bool good = d.ok && d.isDirectCall && (addr(site) + test::callFieldOffset()) % 4 == 0 && d.target == addr(target);
  EXPECT_TRUE(good) << "site #" << index << " at " << static_cast<const void*>(site) << " (key " << key.id
                    << "): decoded '" << d.text << "', expected call to " << target;
  Result<SiteInfo> info = rt.site(site);
  EXPECT_TRUE(info.isOk() && info->key == key && info->target == target)
      << "site #" << index << ": registry disagrees: " << (info.isOk() ? "" : info.status().toString());
  return good;
}

// ---- batches -------------------------------------------------------------------------------

struct SiteField {
  std::vector<const uint8_t*> sites;
  std::vector<Key> keyOf;
};

// `count` Direct sites in one blob, site i bound to keys[i % keys.size()], with 0..2 NOPs
// between sites so the padding varies.
SiteField emitSites(Runtime& rt, const std::vector<Key>& keys, size_t count) {
  jit::Assembler a(rt);
  for (size_t i = 0; i < count; ++i) {
    for (size_t n = 0; n < i % 3; ++n) a.nop();
    EXPECT_TRUE(jit::emitCall(a, keys[i % keys.size()]).isOk());
  }
  test::emitRet(a);
  std::vector<SiteSpec> specs = a.sites();
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  SiteField f;
  if (!b.isOk()) return f;
  for (const SiteSpec& s : specs) {
    f.sites.push_back(static_cast<const uint8_t*>(b->code) + s.offset);
    f.keyOf.push_back(s.key);
  }
  return f;
}

void batchRetargetAndDecode(size_t keyCount, size_t siteCount) {
  Result<Runtime> r = makeRuntime();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  const void* targets[3] = {installReturner(rt, 1), installReturner(rt, 2), installReturner(rt, 3)};
  std::vector<Key> keys;
  for (size_t k = 0; k < keyCount; ++k) {
    Result<Key> key = rt.createKey(targets[0]);
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    keys.push_back(*key);
  }
  SiteField f = emitSites(rt, keys, siteCount);
  ASSERT_EQ(f.sites.size(), siteCount);
  ASSERT_EQ(rt.stats().sites, siteCount);

  for (int round = 1; round <= 2; ++round) {
    std::vector<KeyUpdate> batch;
    for (size_t k = 0; k < keys.size(); ++k) batch.push_back({keys[k], targets[(k + round) % 3]});
    RuntimeStats before = rt.stats();
    Clock::time_point t0 = Clock::now();
    Status s = rt.updateBatch(batch);
    double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    ASSERT_TRUE(s.isOk()) << s.toString();
    RuntimeStats after = rt.stats();
    EXPECT_EQ(after.syncs - before.syncs, 1u) << "a batch of Direct sites must cost exactly one cross-core sync";
    EXPECT_EQ(after.updates - before.updates, keyCount);
    EXPECT_GE(after.siteWrites - before.siteWrites, siteCount);
    std::printf("updateBatch: %zu keys, %zu sites in %.0f us\n", keyCount, siteCount, us);

    size_t bad = 0;
    for (size_t i = 0; i < f.sites.size() && bad < 10; ++i) bad += !checkDirectSite(rt, f.sites[i], f.keyOf[i], i);
    ASSERT_EQ(bad, 0u) << "round " << round;
    for (size_t k = 0; k < keys.size(); ++k) EXPECT_EQ(rt.target(keys[k]).value(), targets[(k + round) % 3]);
  }
}

TEST(Batch, TenThousandSitesOverManyKeysOneSync) { batchRetargetAndDecode(100, 10000); }
TEST(Batch, TenThousandSitesOfOneKeyOneSync) { batchRetargetAndDecode(1, 10000); }

// ---- veneers -------------------------------------------------------------------------------

using test::FarCode;

bool inArena(const ArenaInfo& a, uint64_t p) { return p >= addr(a.rxBase) && p < addr(a.rxBase) + a.size; }

// The veneer at `v`: an absolute jump (x86 `jmp qword [rip+0]`, A64 `ldr x16, #8; br x16`)
// followed by the far target.
void expectVeneerTo(const void* v, const void* far) {
  Decoded d = decodeAt(v);
  uintptr_t dest = test::absoluteJumpTarget(static_cast<const uint8_t*>(v));
  EXPECT_NE(dest, 0u) << "veneer at " << v << " decodes as " << d.text;
  EXPECT_EQ(dest, addr(far)) << "veneer at " << v << " jumps elsewhere";
}

TEST(Veneer, FarTargetIsReachedThroughASharedVeneer) {
  Result<Runtime> r = makeRuntime();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  ArenaInfo arena = rt.arenaInfo();
  FarCode far(arena);
  ASSERT_TRUE(far.ok()) << "could not map a page > 4 GiB away from the arena at " << arena.rxBase;

  const void* near = installReturner(rt, 7);
  Result<Key> key = rt.createKey(near);
  Result<Key> key2 = rt.createKey(near);
  ASSERT_TRUE(key.isOk() && key2.isOk());
  Caller c = installCaller(rt, *key), c2 = installCaller(rt, *key2);
  ASSERT_EQ(c(), 7);
  uint64_t veneersBefore = rt.stats().veneers;

  Result<const void*> old = rt.update(*key, far.fn(0));
  ASSERT_TRUE(old.isOk()) << old.status().toString();
  Decoded d = decodeAt(c.site);
  ASSERT_TRUE(d.isDirectCall) << d.text;
  EXPECT_TRUE(inArena(arena, d.target)) << "the site should call a veneer inside the arena, decoded " << d.text;
  expectVeneerTo(reinterpret_cast<const void*>(d.target), far.fn(0));
  EXPECT_EQ(rt.site(c.site)->target, far.fn(0)) << "SiteInfo::target names the final target, not the veneer";
  EXPECT_EQ(c(), 0xFA1);
  auto tramp = reinterpret_cast<int (*)()>(const_cast<void*>(rt.trampoline(*key).value()));
  EXPECT_EQ(tramp(), 0xFA1) << "the trampoline reaches the far target too";
  EXPECT_EQ(rt.stats().veneers, veneersBefore + 1);

  // A second key to the same far target shares the veneer.
  ASSERT_TRUE(rt.update(*key2, far.fn(0)).isOk());
  EXPECT_EQ(decodeAt(c2.site).target, d.target) << "one veneer per far target";
  EXPECT_EQ(rt.stats().veneers, veneersBefore + 1);
  EXPECT_EQ(c2(), 0xFA1);

  // Another far target: a second veneer; back to a near target: no veneer at all.
  ASSERT_TRUE(rt.update(*key, far.fn(1)).isOk());
  EXPECT_EQ(c(), 0xFA2);
  EXPECT_EQ(rt.stats().veneers, veneersBefore + 2);
  ASSERT_TRUE(rt.update(*key, near).isOk());
  EXPECT_EQ(decodeAt(c.site).target, addr(near));
  EXPECT_EQ(c(), 7);
}

TEST(Veneer, DisabledVeneersRefuseFarTargetsAndLeaveTheSite) {
  Options o;
  o.allowVeneers = false;
  Result<Runtime> r = makeRuntime(o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  FarCode far(rt.arenaInfo());
  ASSERT_TRUE(far.ok());
  const void* near = installReturner(rt, 7);
  Result<Key> key = rt.createKey(near);
  ASSERT_TRUE(key.isOk());
  Caller c = installCaller(rt, *key);
  auto* tramp = static_cast<const uint8_t*>(rt.trampoline(*key).value());
  std::vector<uint8_t> siteBefore(c.site, c.site + test::callSize()), trampBefore(tramp, tramp + test::callSize());
  RuntimeStats before = rt.stats();

  Result<const void*> res = rt.update(*key, far.fn(0));
  ASSERT_FALSE(res.isOk());
  EXPECT_EQ(res.code(), Error::kOutOfRange) << res.status().toString();
  EXPECT_FALSE(res.status().message().empty());
  EXPECT_EQ(std::vector<uint8_t>(c.site, c.site + test::callSize()), siteBefore) << "the site was modified";
  EXPECT_EQ(std::vector<uint8_t>(tramp, tramp + test::callSize()), trampBefore) << "the trampoline was modified";
  EXPECT_EQ(rt.target(*key).value(), near);
  EXPECT_EQ(rt.stats().siteWrites, before.siteWrites);
  EXPECT_EQ(rt.stats().veneers, 0u);
  EXPECT_EQ(c(), 7);
}

// ---- trampolines -----------------------------------------------------------------------------

__attribute__((noinline)) int square(int x) { return x * x; }
__attribute__((noinline)) int cube(int x) { return x * x * x; }

// The trampoline is a direct jump (x86 `jmp rel32`, A64 `b`) with an aligned field, to the
// target or a veneer for it.
void expectTrampolineTo(const void* tramp, const void* target) {
  Decoded d = decodeAt(tramp);
  uint64_t dest = test::directJumpTarget(static_cast<const uint8_t*>(tramp));
  EXPECT_NE(dest, 0u) << "the trampoline is not a direct jump: " << d.text;
  EXPECT_EQ((addr(tramp) + test::callFieldOffset()) % 4, 0u) << "trampoline field unaligned at " << tramp;
  if (dest == 0) return;
  if (uintptr_t far = test::absoluteJumpTarget(reinterpret_cast<const uint8_t*>(dest)); far != 0) dest = far;  // a veneer
  EXPECT_EQ(dest, addr(target)) << "trampoline decodes as " << d.text;
}

TEST(Trampoline, StaticCallFromCxxSeesUpdates) {
  Result<Runtime> r = makeRuntime();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  Result<StaticCall<int(int)>> sc = StaticCall<int(int)>::create(rt, &square, "power");
  ASSERT_TRUE(sc.isOk()) << sc.status().toString();
  EXPECT_EQ((*sc)(3), 9);
  EXPECT_EQ(sc->trampoline()(4), 16);
  expectTrampolineTo(reinterpret_cast<const void*>(sc->trampoline()), reinterpret_cast<const void*>(&square));

  // A JIT site bound to the same key (edi passes straight through to the target).
  Caller c = installCaller(rt, sc->key());
  auto jitPower = reinterpret_cast<int (*)(int)>(c.blob.code);
  EXPECT_EQ(jitPower(5), 25);

  Result<StaticCall<int(int)>::Fn> old = sc->update(&cube);
  ASSERT_TRUE(old.isOk()) << old.status().toString();
  EXPECT_EQ(*old, &square);
  EXPECT_EQ(sc->target(), &cube);
  EXPECT_EQ((*sc)(3), 27);
  EXPECT_EQ(jitPower(5), 125);
  expectTrampolineTo(reinterpret_cast<const void*>(sc->trampoline()), reinterpret_cast<const void*>(&cube));

  // Many flips, each observed at once by the next call from C++.
  for (int i = 0; i < 200; ++i) {
    bool toSquare = i % 2 == 0;
    ASSERT_TRUE(sc->update(toSquare ? &square : &cube).isOk());
    ASSERT_EQ((*sc)(2), toSquare ? 4 : 8) << "flip " << i;
    ASSERT_EQ(jitPower(2), toSquare ? 4 : 8) << "flip " << i;
  }
}

}  // namespace
}  // namespace patchcall

// Stress of the multi-store site forms: 4 threads call through 1,000 sites while 100,000 key
// updates retarget them, once for unaligned Breakpoint sites and once for Toggle sites (grace
// rule on).
//
// Invariant 2 of DESIGN.md is checked on every call: key k's version v targets
// targets[(k + v) % 16]; the updater publishes begun[k] before it writes and done[k] after
// the update returned, and a caller reads done[k] before and begun[k] after its call, so
// the target it reached must belong to some version in [done, begun]. A torn call would
// land elsewhere (int3 fill or the middle of an instruction) and crash the run.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "isa.h"
#include "disasm.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {

using Clock = std::chrono::steady_clock;
using Fn = int (*)();

constexpr int kTargets = 16, kIdBase = 4000;

struct StressPlan {
  SiteForm form;
  int keys, sitesPerKey, keysPerBatch;
  uint64_t keyUpdates;  // each key in each batch counts as one update
  int callers;
};

struct Site {
  Fn fn;
  const uint8_t* site;
  int key;  // index into the plan's keys
};

std::vector<const void*> installTargets(Runtime& rt) {
  jit::Assembler a(rt);
  std::vector<size_t> offsets;
  for (int i = 0; i < kTargets; ++i) {
    a.align(asmjit::AlignMode::kCode, 16);
    offsets.push_back(a.offset());
    test::emitSetResult(a, kIdBase + i);
    test::emitRet(a);
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<const void*> out;
  if (b) {
    for (size_t off : offsets) out.push_back(static_cast<const uint8_t*>(b->code) + off);
  }
  return out;
}

// One function per site: `sub rsp, 8 ; nops ; site ; add rsp, 8 ; ret`. Breakpoint sites
// get an unaligned rel32 (offset 1, 2 or 3 modulo 4), never an aligned one.
std::vector<Site> installSites(Runtime& rt, const StressPlan& p, const std::vector<Key>& keys) {
  jit::Assembler a(rt);
  std::vector<size_t> starts;
  std::vector<int> owner;
  for (int k = 0; k < p.keys; ++k) {
    for (int s = 0; s < p.sitesPerKey; ++s) {
      a.align(asmjit::AlignMode::kCode, 16);
      starts.push_back(a.offset());
      owner.push_back(k);
      test::emitEnter(a);
      if (p.form == SiteForm::kBreakpoint) {
        size_t want = 1 + starts.size() % 3;
        while ((a.offset() + 1) % 4 != want) a.nop();
      }
      Status st = jit::emitCall(a, keys[k], p.form);
      EXPECT_TRUE(st.isOk()) << st.toString();
      test::emitLeave(a);
      test::emitRet(a);
    }
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<Site> out;
  if (!b || a.sites().size() != starts.size()) return out;
  auto* base = static_cast<const uint8_t*>(b->code);
  for (size_t i = 0; i < starts.size(); ++i) {
    out.push_back(Site{reinterpret_cast<Fn>(base + starts[i]), base + a.sites()[i].offset, owner[i]});
  }
  return out;
}

// The call target a site executes now, read from its bytes (the selected call of a toggle).
uint64_t activeTarget(const Site& s, SiteForm form) {
  const uint8_t* call = s.site;
  if (form == SiteForm::kToggle) call = s.site[0] == 0xEB ? s.site + 2 + 7 : s.site + 2;
  test::Decoded d = test::decodeAt(call);
  return d.isCall && d.opcode == 0xE8 ? d.target : 0;
}

void runStress(const StressPlan& p) {
  Options o;
  o.graceDeadline = std::chrono::milliseconds(5000);
  Result<Runtime> created = Runtime::create(o);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  Runtime& rt = *created;
  std::vector<const void*> targets = installTargets(rt);
  ASSERT_EQ(targets.size(), static_cast<size_t>(kTargets));
  auto targetOf = [&](int k, uint64_t v) { return targets[(k + v) % kTargets]; };

  std::vector<Key> keys;
  for (int k = 0; k < p.keys; ++k) {
    Result<Key> key = rt.createKey(targetOf(k, 0));
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    keys.push_back(*key);
  }
  std::vector<Site> sites = installSites(rt, p, keys);
  ASSERT_EQ(sites.size(), static_cast<size_t>(p.keys * p.sitesPerKey));
  for (const Site& s : sites) {
    Result<SiteInfo> info = rt.site(s.site);
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    ASSERT_EQ(info->form, p.form) << "site at " << static_cast<const void*>(s.site);
    if (p.form == SiteForm::kBreakpoint) {
      ASSERT_NE((reinterpret_cast<uintptr_t>(s.site) + 1) % 4, 0u) << "breakpoint sites must be unaligned";
    }
  }

  std::unique_ptr<std::atomic<uint64_t>[]> begun(new std::atomic<uint64_t>[p.keys]);
  std::unique_ptr<std::atomic<uint64_t>[]> done(new std::atomic<uint64_t>[p.keys]);
  for (int k = 0; k < p.keys; ++k) begun[k] = done[k] = 0;

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, violations{0};
  std::mutex firstMutex;
  std::string firstViolation;
  const bool needsSafepoints = p.form == SiteForm::kToggle;
  auto caller = [&](int index) {
    ThreadScope scope;
    if (needsSafepoints) {
      Result<ThreadScope> r = rt.registerThread("stress-caller-" + std::to_string(index));
      if (!r) {
        violations.fetch_add(1);
        return;
      }
      scope = std::move(*r);
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull * (index + 1), n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      const Site& s = sites[rng % sites.size()];
      uint64_t lo = done[s.key].load(std::memory_order_acquire);
      int r = s.fn();
      uint64_t hi = begun[s.key].load(std::memory_order_acquire);
      bool ok = false;
      for (uint64_t v = lo; v <= hi && v < lo + kTargets && !ok; ++v) {
        ok = r == kIdBase + static_cast<int>((s.key + v) % kTargets);
      }
      if (!ok) {
        violations.fetch_add(1);
        std::lock_guard<std::mutex> lock(firstMutex);
        if (firstViolation.empty()) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "site %p (key %d) returned %d, versions [%llu, %llu]",
                        static_cast<const void*>(s.site), s.key, r, static_cast<unsigned long long>(lo),
                        static_cast<unsigned long long>(hi));
          firstViolation = buf;
        }
      }
      ++n;
      if (needsSafepoints) safepoint();
    }
    calls.fetch_add(n);
  };
  std::vector<std::thread> callers;
  for (int i = 0; i < p.callers; ++i) callers.emplace_back(caller, i);

  RuntimeStats before = rt.stats();
  auto start = Clock::now(), deadline = start + std::chrono::seconds(50);
  std::vector<uint64_t> version(p.keys, 0);
  std::vector<KeyUpdate> batch;
  std::vector<int> batchKeys;
  uint64_t updates = 0, batches = 0;
  Status failed;
  int next = 0;
  while (updates < p.keyUpdates && Clock::now() < deadline) {
    batch.clear();
    batchKeys.clear();
    for (int i = 0; i < p.keysPerBatch; ++i, next = (next + 1) % p.keys) {
      batchKeys.push_back(next);
      uint64_t v = ++version[next];
      begun[next].store(v, std::memory_order_release);
      batch.push_back(KeyUpdate{keys[next], targetOf(next, v)});
    }
    failed = rt.updateBatch(batch);
    if (!failed.isOk()) break;
    for (int k : batchKeys) done[k].store(version[k], std::memory_order_release);
    updates += batch.size();
    ++batches;
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  for (std::thread& t : callers) t.join();
  RuntimeStats after = rt.stats();

  std::printf("[ info ] %s: %llu key updates in %llu batches of %d keys (%d sites each) in %.2f s: "
              "%.0f updates/s, %.0f batches/s; %llu calls by %d threads; %llu syncs, %llu traps emulated, "
              "%llu toggle grace waits, %llu grace periods\n",
              p.form == SiteForm::kToggle ? "toggle" : "breakpoint", static_cast<unsigned long long>(updates),
              static_cast<unsigned long long>(batches), p.keysPerBatch, p.sitesPerKey, seconds, updates / seconds,
              batches / seconds, static_cast<unsigned long long>(calls.load()), p.callers,
              static_cast<unsigned long long>(after.syncs - before.syncs),
              static_cast<unsigned long long>(after.trapsEmulated - before.trapsEmulated),
              static_cast<unsigned long long>(after.toggleGraceWaits - before.toggleGraceWaits),
              static_cast<unsigned long long>(after.gracePeriods - before.gracePeriods));

  ASSERT_TRUE(failed.isOk()) << "batch " << batches << ": " << failed.toString();
  EXPECT_EQ(updates, p.keyUpdates) << "did not finish within 50 s";
  EXPECT_EQ(violations.load(), 0u) << "first: " << firstViolation;
  EXPECT_GT(calls.load(), static_cast<uint64_t>(p.callers) * 1000) << "callers barely ran";
  EXPECT_EQ(after.updates - before.updates, updates);
  for (const Site& s : sites) {
    const void* want = targetOf(s.key, version[s.key]);
    ASSERT_EQ(activeTarget(s, p.form), reinterpret_cast<uint64_t>(want))
        << "site " << static_cast<const void*>(s.site) << " of key " << s.key << " after the run";
    ASSERT_EQ(s.fn(), kIdBase + static_cast<int>((s.key + version[s.key]) % kTargets));
  }
}

// 100 keys x 10 unaligned sites; batches of 10 keys (100 sites, three syncs per batch).
TEST(FormsStress, ThousandUnalignedBreakpointSitesHundredThousandUpdates) {
  runStress(StressPlan{SiteForm::kBreakpoint, 100, 10, 10, 100000, 4});
}

// 1,000 keys x 1 toggle site; batches of 10 keys. Each key is re-flipped 100 batches after
// its last flip, so the grace-period rule is exercised every round (about one wait per
// round of 100 batches: a wait covers every flip made before it). With 4 busy callers on
// 2 cores a grace period lasts a scheduler time slice or more, hence many keys, few rounds.
TEST(FormsStress, ThousandToggleSitesHundredThousandUpdates) {
  runStress(StressPlan{SiteForm::kToggle, 1000, 1, 10, 100000, 4});
}

}  // namespace
}  // namespace patchcall

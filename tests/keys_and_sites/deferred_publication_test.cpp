// Deferred publication (UpdateOptions::publish = Publish::kDeferred) and shared syncs: what a
// deferred update writes and what it leaves to publish(); the window every call lands in
// while 4 threads call through sites of every form; that code a deferred update moved calls
// away from is never freed before a sync (and that the fault switch skipping it is caught);
// concurrent updaters sharing syncs; the background publisher.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/jit.h"
#include "patchcall/testing.h"
#include "quiescence_util.h"

namespace patchcall {
namespace {

using namespace std::chrono_literals;
using Fn = int (*)();

constexpr int kTargets = 16;
template <int N>
int target() {
  return 9000 + N;
}
template <int... N>
std::vector<const void*> targetList(std::integer_sequence<int, N...>) {
  return {reinterpret_cast<const void*>(&target<N>)...};
}
const std::vector<const void*>& targets() {
  static const std::vector<const void*> t = targetList(std::make_integer_sequence<int, kTargets>());
  return t;
}
int targetValue(int k, uint64_t v) { return 9000 + static_cast<int>((k + v) % kTargets); }
const void* targetOf(int k, uint64_t v) { return targets()[(k + v) % kTargets]; }

// One function per key returning what its site's target returns (test::installCallers: a
// Breakpoint site there has an unaligned rel32).
std::vector<Fn> installCallers(Runtime& rt, const std::vector<Key>& keys, SiteForm form) {
  std::vector<Fn> out;
  for (const test::SiteCaller& c : test::installCallers(rt, keys, form)) out.push_back(c.fn);
  return out;
}

std::vector<Key> makeKeys(Runtime& rt, int n) {
  std::vector<Key> keys;
  for (int k = 0; k < n; ++k) {
    Result<Key> key = rt.createKey(targetOf(k, 0));
    EXPECT_TRUE(key.isOk()) << key.status().toString();
    if (key) keys.push_back(*key);
  }
  return keys;
}

// The arena within a direct call's reach of these C++ targets (aarch64: BL's +-128 MiB, which
// the default 256 MiB arena beside the text exceeds): the sync counts below are about sites,
// and a far target's veneer takes a sync of its own.
Options nearOptions() {
  Options o;
  o.arenaSize = test::arenaSizeWithinCallReach();
  return o;
}

const UpdateOptions kDeferred{.strict = false, .deadline = std::nullopt, .publish = Publish::kDeferred};

TEST(DeferredPublication, DirectUpdateWritesWithoutSyncAndPublishSyncsOnce) {
  Options o = nearOptions();
  o.publishDelay = std::chrono::seconds(10);  // the background publisher stays out of the counts (slow under qemu)
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<Key> keys = makeKeys(*rt, 1);
  std::vector<Fn> fns = installCallers(*rt, keys, SiteForm::kDirect);
  ASSERT_EQ(fns.size(), 1u);
  RuntimeStats before = rt->stats();
  for (uint64_t v = 1; v <= 10; ++v) {
    Result<const void*> old = rt->update(keys[0], targetOf(0, v), kDeferred);
    ASSERT_TRUE(old.isOk()) << old.status().toString();
    EXPECT_EQ(*old, targetOf(0, v - 1));
    EXPECT_EQ(*rt->target(keys[0]), targetOf(0, v)) << "target() names the new target at once";
    // (Hardware: the writer's own cache maintenance. qemu-user retranslates only at a sync.)
    if (!test::emulated()) {
      EXPECT_EQ(fns[0](), targetValue(0, v)) << "the updating thread calls the new target";
    }
  }
  RuntimeStats after = rt->stats();
  EXPECT_EQ(after.syncs, before.syncs) << "a deferred Direct update must not sync";
  EXPECT_EQ(after.updatesDeferred - before.updatesDeferred, 10u);
  ASSERT_TRUE(rt->publish().isOk());
  RuntimeStats published = rt->stats();
  EXPECT_EQ(published.syncs, after.syncs + 1) << "publish() covers every deferred update with one sync";
  EXPECT_EQ(published.publishSyncs, after.publishSyncs + 1);
  ASSERT_TRUE(rt->publish().isOk());
  EXPECT_EQ(rt->stats().syncs, published.syncs) << "nothing pending: publish() must not sync";
}

TEST(DeferredPublication, StrictOrStrictKeyPublishesNow) {
  Result<Runtime> rt = Runtime::create(nearOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> strictKey = rt->createKey(targetOf(0, 0), "strict", KeyOptions{.strictUpdates = true});
  ASSERT_TRUE(strictKey.isOk());
  uint64_t syncs = rt->stats().syncs;
  ASSERT_TRUE(rt->update(*strictKey, targetOf(0, 1), kDeferred).isOk());
  EXPECT_EQ(rt->stats().syncs, syncs + 1) << "a key with strictUpdates publishes a deferred update now";
  UpdateOptions strictDeferred = kDeferred;
  strictDeferred.strict = true;
  std::vector<Key> keys = makeKeys(*rt, 1);
  syncs = rt->stats().syncs;
  ASSERT_TRUE(rt->update(keys[0], targetOf(0, 1), strictDeferred).isOk());
  EXPECT_EQ(rt->stats().syncs, syncs + 1) << "UpdateOptions::strict publishes a deferred update now";
}

// 4 callers call every key's function while the main thread makes deferred updates and
// publishes every 8th. A caller reads published[k] before its call and begun[k] after: the
// target it reached must be one of versions [published, begun].
void runCallersWindow(SiteForm form, int keysN, int updates) {
  // The default arena: on aarch64 every call to these C++ targets then goes through a veneer,
  // each update orphans one, and a veneer freed before its callers' rewrite was published
  // crashed this test (SIGILL in a freed veneer; Retargeter::update retires them after it).
  Options o;
  o.graceDeadline = 5000ms;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<Key> keys = makeKeys(*rt, keysN);
  std::vector<Fn> fns = installCallers(*rt, keys, form);
  ASSERT_EQ(fns.size(), static_cast<size_t>(keysN));
  std::unique_ptr<std::atomic<uint64_t>[]> begun(new std::atomic<uint64_t>[keysN]);
  std::unique_ptr<std::atomic<uint64_t>[]> published(new std::atomic<uint64_t>[keysN]);
  for (int k = 0; k < keysN; ++k) begun[k] = published[k] = 0;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, violations{0};
  std::mutex firstMutex;
  std::string first;
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      Result<ThreadScope> scope = rt->registerThread("caller");
      if (!scope) return;
      for (uint64_t i = t; !stop.load(std::memory_order_relaxed); ++i) {
        int k = static_cast<int>(i % keysN);
        uint64_t lo = published[k].load(std::memory_order_acquire);
        int got = fns[k]();
        uint64_t hi = begun[k].load(std::memory_order_acquire);
        bool ok = false;
        for (uint64_t v = lo; v <= hi && !ok; ++v) ok = got == targetValue(k, v);
        if (!ok && violations.fetch_add(1) == 0) {
          std::lock_guard<std::mutex> lock(firstMutex);
          first = "key " + std::to_string(k) + " returned " + std::to_string(got) + ", versions [" + std::to_string(lo) +
                  ", " + std::to_string(hi) + "] allow none of that";
        }
        calls.fetch_add(1, std::memory_order_relaxed);
        safepoint();
      }
    });
  }
  ASSERT_TRUE(qtest::waitUntil([&] { return calls.load() > 100; })) << "the callers never started";
  std::vector<uint64_t> version(keysN, 0);
  auto minEnd = qtest::Clock::now() + 200ms;  // the callers run through at least this much of it
  for (int u = 0; u < updates || qtest::Clock::now() < minEnd; ++u) {
    int k = u % keysN;
    uint64_t v = ++version[k];
    begun[k].store(v, std::memory_order_release);
    Result<const void*> r = rt->update(keys[k], targetOf(k, v), kDeferred);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    if (u % 8 == 7) {
      std::vector<uint64_t> covered = version;  // every update so far returned
      ASSERT_TRUE(rt->publish().isOk());
      for (int j = 0; j < keysN; ++j) published[j].store(covered[j], std::memory_order_release);
    }
  }
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(violations.load(), 0u) << first;
  EXPECT_GT(calls.load(), 1000u) << "the callers barely ran";
  std::printf("%s: %d deferred updates, %llu calls, %llu syncs, %llu publish syncs\n",
              form == SiteForm::kDirect ? "direct" : form == SiteForm::kToggle ? "toggle" : "breakpoint", updates,
              static_cast<unsigned long long>(calls.load()), static_cast<unsigned long long>(rt->stats().syncs),
              static_cast<unsigned long long>(rt->stats().publishSyncs));
}

TEST(DeferredPublication, DirectSitesFourCallersStayInTheWindow) { runCallersWindow(SiteForm::kDirect, 8, 20000); }
TEST(DeferredPublication, ToggleSitesFourCallersStayInTheWindow) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  runCallersWindow(SiteForm::kToggle, 8, 2000);
}
TEST(DeferredPublication, BreakpointSitesFourCallersStayInTheWindow) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  runCallersWindow(SiteForm::kBreakpoint, 8, 2000);
}

// A blob that a deferred update moved the key away from is retired and freed by barrier():
// its grace period must start with a publish. With the fault switch that skips it, the free
// happens while the move is unpublished, and the reclaimer's check counts it.
uint64_t freeAfterDeferredMove(bool skipPublish) {
  Options o = nearOptions();
  o.backgroundReclaimer = false;  // nothing but the grace period may publish
  Result<Runtime> rt = Runtime::create(o);
  EXPECT_TRUE(rt.isOk()) << rt.status().toString();
  if (!rt) return 0;
  jit::Assembler t(*rt);
  test::emitSetResult(t, 7);
  test::emitRet(t);
  Result<Blob> old = jit::install(t);
  EXPECT_TRUE(old.isOk());
  Result<Key> key = rt->createKey(old->code);
  EXPECT_TRUE(key.isOk());
  std::vector<Fn> fns = installCallers(*rt, {*key}, SiteForm::kDirect);
  EXPECT_EQ(fns.size(), 1u);
  EXPECT_EQ(fns[0](), 7);
  EXPECT_TRUE(rt->update(*key, targetOf(0, 1), kDeferred).isOk());
  EXPECT_TRUE(rt->retire(*old).isOk());
  testing::setSkipPublishBeforeGracePeriod(skipPublish);
  uint64_t before = testing::blobsFreedUnpublished();
  Status b = rt->barrier(5000ms);
  testing::setSkipPublishBeforeGracePeriod(false);
  EXPECT_TRUE(b.isOk()) << b.toString();
  EXPECT_EQ(rt->stats().blobsFreed, 1u);
  return testing::blobsFreedUnpublished() - before;
}

TEST(DeferredPublication, CodeMovedAwayFromIsFreedOnlyAfterAPublish) {
  EXPECT_EQ(freeAfterDeferredMove(false), 0u) << "a blob was freed while the deferred move away from it was unpublished";
  EXPECT_GT(freeAfterDeferredMove(true), 0u) << "the fault (grace periods without a publish) went unnoticed";
}

// A runtime without the background reclaimer (nothing publishes behind the test's back) and
// one key, updated once deferred.
struct ManualWithOneDeferredUpdate {
  Result<Runtime> rt = Status(Error::kInvalidArgument, "not created");
  std::vector<Key> keys;
  ManualWithOneDeferredUpdate() {
    Options o = nearOptions();
    o.backgroundReclaimer = false;
    rt = Runtime::create(o);
    EXPECT_TRUE(rt.isOk()) << rt.status().toString();
    if (!rt) return;
    keys = makeKeys(*rt, 1);
    EXPECT_TRUE(rt->update(keys[0], targetOf(0, 1), kDeferred).isOk());
  }
};

TEST(DeferredPublication, SynchronizeAndRetireCallbacksPublishFirst) {
  ManualWithOneDeferredUpdate m;
  ASSERT_TRUE(m.rt.isOk());
  Result<Runtime>& rt = m.rt;
  std::vector<Key>& keys = m.keys;
  uint64_t ps = rt->stats().publishSyncs;
  ASSERT_TRUE(rt->synchronize(5000ms).isOk());
  EXPECT_EQ(rt->stats().publishSyncs, ps + 1) << "synchronize() must publish deferred updates first";
  ASSERT_TRUE(rt->update(keys[0], targetOf(0, 2), kDeferred).isOk());
  std::atomic<bool> ran{false};
  ASSERT_TRUE(rt->retire([&] { ran = true; }).isOk());
  ASSERT_TRUE(rt->barrier(5000ms).isOk());
  EXPECT_TRUE(ran.load());
  EXPECT_EQ(rt->stats().publishSyncs, ps + 2) << "the retire callback's grace period must publish first";
}

TEST(DeferredPublication, BackgroundPublisherPublishesWithinTheDelay) {
  Options o = nearOptions();
  o.publishDelay = 500us;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk());
  std::vector<Key> keys = makeKeys(*rt, 1);
  uint64_t ps = rt->stats().publishSyncs;
  ASSERT_TRUE(rt->update(keys[0], targetOf(0, 1), kDeferred).isOk());
  EXPECT_TRUE(qtest::waitUntil([&] { return rt->stats().publishSyncs > ps; }, 2000ms))
      << "nobody published the deferred update";
}

TEST(DeferredPublication, ManualModePollPublishes) {
  ManualWithOneDeferredUpdate m;
  ASSERT_TRUE(m.rt.isOk());
  uint64_t ps = m.rt->stats().publishSyncs;
  (void)m.rt->poll();
  EXPECT_EQ(m.rt->stats().publishSyncs, ps + 1);
}

// Immediate Direct updates from 4 threads (distinct keys, then one shared key), each sync made
// 300 us slow (sleeping, so the other updaters get the CPU, as on a machine with a core per
// updater): each update returns only after a sync that started after its writes, and the
// threads share syncs (one per update without group commit).
TEST(SharedSyncs, ConcurrentUpdatersShareSyncsAndEachReturnsPublished) {
  Result<Runtime> rt = Runtime::create(nearOptions());
  ASSERT_TRUE(rt.isOk());
  std::vector<Key> keys = makeKeys(*rt, 5);
  std::vector<Fn> fns = installCallers(*rt, keys, SiteForm::kDirect);
  ASSERT_EQ(fns.size(), 5u);
  constexpr int kPerThread = 100;
  testing::setSyncSleep(300);
  RuntimeStats before = rt->stats();
  std::atomic<uint64_t> failures{0};
  std::vector<std::thread> updaters;
  for (int t = 0; t < 4; ++t) {
    updaters.emplace_back([&, t] {
      for (int i = 1; i <= kPerThread; ++i) {
        int k = i % 2 == 0 ? t : 4;  // own key, then the shared one
        if (!rt->update(keys[k], targetOf(k, static_cast<uint64_t>(i))).isOk()) failures.fetch_add(1);
        if (k == t && fns[k]() != targetValue(k, static_cast<uint64_t>(i))) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : updaters) t.join();
  testing::setSyncSleep(0);
  EXPECT_EQ(failures.load(), 0u);
  RuntimeStats after = rt->stats();
  uint64_t updates = after.updates - before.updates, syncs = after.syncs - before.syncs;
  // Own-key updates always change the target; one to the shared key may repeat the target
  // another thread just set, which is a no-op (not counted, no sync).
  EXPECT_GE(updates, 2u * kPerThread);
  EXPECT_LE(updates, 4u * kPerThread);
  double perUpdate = static_cast<double>(syncs) / static_cast<double>(updates);
  EXPECT_LT(perUpdate, 0.7) << "4 updaters queued for slow syncs and did not share them";
  std::printf("4 updaters, 300 us syncs: %llu updates, %llu syncs (%.2f per update)\n",
              static_cast<unsigned long long>(updates), static_cast<unsigned long long>(syncs), perUpdate);
}

}  // namespace
}  // namespace patchcall

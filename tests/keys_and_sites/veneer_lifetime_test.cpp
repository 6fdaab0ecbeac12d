// Veneers over their life: planned in validation (a refused batch writes none), written and
// synced before any call names them, and (with Options::freeVeneersOutsideArena, or for
// targets in the arena) freed a grace period after the last call stopped naming them (the slot
// is reused); by default a veneer to code outside the arena is pinned. A toggle's inactive
// call keeps its veneer alive.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "disasm.h"
#include "far_code.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {

using test::FarCode;

constexpr int kFar0 = 0xFA1, kFar1 = 0xFA2;

std::vector<uint8_t> arenaBytes(const Runtime& rt) {
  ArenaInfo a = rt.arenaInfo();
  auto* p = static_cast<const uint8_t*>(a.rxBase);
  return std::vector<uint8_t>(p, p + std::min<size_t>(a.size, size_t{1} << 20));
}

// Where the call at `site` (its first byte) points: the target or a veneer.
uintptr_t destinationOf(const uint8_t* site) { return static_cast<uintptr_t>(test::decodeAt(site).target); }

bool allFill(uintptr_t p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (reinterpret_cast<const uint8_t*>(p)[i] != test::fillByte()) return false;
  }
  return true;
}

TEST(VeneerLifetime, BatchRefusedInValidationWritesNoVeneer) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  FarCode far(rt->arenaInfo());
  if (!far.ok()) GTEST_SKIP() << "no page more than 4 GiB from the arena";
  std::vector<const void*> targets = test::installTargets(*rt, 2, 10);
  ASSERT_EQ(targets.size(), 2u);
  std::vector<Key> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(*rt->createKey(targets[0]));
  std::vector<test::SiteCaller> callers = test::installCallers(*rt, keys, SiteForm::kDirect);
  ASSERT_EQ(callers.size(), 3u);
  // One live veneer, so the veneer pool has its chunk: a new veneer would go next to it.
  ASSERT_TRUE(rt->update(keys[0], far.fn(0)).isOk());
  ASSERT_EQ(callers[0].fn(), kFar0);

  std::vector<uint8_t> before = arenaBytes(*rt);
  RuntimeStats statsBefore = rt->stats();
  // Key 1's far target is validated (and, on the old code, its veneer written) before key 2's
  // null target refuses the batch.
  KeyUpdate refused[] = {{keys[1], far.fn(1)}, {keys[2], nullptr}};
  EXPECT_EQ(rt->updateBatch(refused).code(), Error::kNullTarget);
  std::vector<uint8_t> after = arenaBytes(*rt);
  ASSERT_EQ(before.size(), after.size());
  size_t firstDiff = 0;
  while (firstDiff < before.size() && before[firstDiff] == after[firstDiff]) ++firstDiff;
  EXPECT_EQ(firstDiff, before.size()) << "the refused batch changed arena byte " << firstDiff << " (at "
                                      << static_cast<const void*>(static_cast<const uint8_t*>(rt->arenaInfo().rxBase) + firstDiff)
                                      << ")";
  EXPECT_EQ(rt->stats().veneers, statsBefore.veneers);
  EXPECT_EQ(rt->stats().syncs, statsBefore.syncs) << "nothing written, nothing synced";

  // The same far target in a valid batch: its veneer is written then, and works.
  KeyUpdate valid[] = {{keys[1], far.fn(1)}, {keys[2], targets[1]}};
  ASSERT_TRUE(rt->updateBatch(valid).isOk());
  EXPECT_EQ(callers[1].fn(), kFar1);
  EXPECT_EQ(callers[2].fn(), test::idOf(targets[1]));
  EXPECT_EQ(rt->stats().veneers, statsBefore.veneers + 1);
}

// Freeing veneers to code outside the arena (FarCode is outside) is asked for here.
Options freeingOptions() {
  Options o;
  o.freeVeneersOutsideArena = true;
  return o;
}

TEST(VeneerLifetime, UnusedVeneerIsFreedAfterAGracePeriodAndItsSlotReused) {
  Result<Runtime> rt = Runtime::create(freeingOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  FarCode far(rt->arenaInfo());
  if (!far.ok()) GTEST_SKIP() << "no page more than 4 GiB from the arena";
  std::vector<const void*> targets = test::installTargets(*rt, 2, 20);
  Result<Key> key = rt->createKey(targets[0]);
  ASSERT_TRUE(key.isOk());
  std::vector<test::SiteCaller> callers = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(callers.size(), 1u);

  ASSERT_TRUE(rt->update(*key, far.fn(0)).isOk());
  ASSERT_EQ(callers[0].fn(), kFar0);
  uintptr_t veneer = destinationOf(callers[0].site);
  EXPECT_NE(veneer, reinterpret_cast<uintptr_t>(far.fn(0))) << "the site should call a veneer";
  EXPECT_EQ(rt->stats().veneers, 1u);
  size_t usedWithVeneer = rt->arenaInfo().used;

  // Site and trampoline move off the veneer: it is unused, and freed after a grace period.
  ASSERT_TRUE(rt->update(*key, targets[1]).isOk());
  EXPECT_EQ(rt->stats().veneers, 0u) << "an unused veneer is no longer handed to new calls";
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_EQ(rt->stats().veneersFreed, 1u);
  EXPECT_TRUE(allFill(veneer, 16)) << "a freed veneer is filled (x86: int3, A64: udf)";

  // A new far target reuses the slot: the arena does not grow with every far target.
  ASSERT_TRUE(rt->update(*key, far.fn(1)).isOk());
  EXPECT_EQ(destinationOf(callers[0].site), veneer);
  EXPECT_EQ(callers[0].fn(), kFar1);
  EXPECT_EQ(rt->arenaInfo().used, usedWithVeneer);
  EXPECT_EQ(rt->stats().veneers, 1u);
}

TEST(VeneerLifetime, ToggleInactiveCallKeepsItsVeneerUntilRewritten) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  Result<Runtime> rt = Runtime::create(freeingOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  FarCode far(rt->arenaInfo());
  if (!far.ok()) GTEST_SKIP() << "no page more than 4 GiB from the arena";
  std::vector<const void*> targets = test::installTargets(*rt, 2, 30);
  Result<Key> key = rt->createKey(targets[0]);
  ASSERT_TRUE(key.isOk());
  std::vector<test::SiteCaller> callers = test::installCallers(*rt, {*key}, SiteForm::kToggle);
  ASSERT_EQ(callers.size(), 1u);

  ASSERT_TRUE(rt->update(*key, far.fn(0)).isOk());  // call B -> veneer, flip to B
  ASSERT_EQ(callers[0].fn(), kFar0);
  ASSERT_TRUE(rt->update(*key, targets[1]).isOk());  // call A -> t1, flip to A; B still -> veneer
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_EQ(rt->stats().veneersFreed, 0u) << "a thread past the toggle may still take call B";
  EXPECT_EQ(rt->stats().veneers, 1u);
  ASSERT_TRUE(rt->update(*key, targets[0]).isOk());  // call B rewritten: the veneer is unused
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_EQ(rt->stats().veneersFreed, 1u);
  EXPECT_EQ(rt->stats().veneers, 0u);
  EXPECT_EQ(callers[0].fn(), test::idOf(targets[0]));
}

// By default a veneer to code outside the arena outlives its last branch: a C++ thread patchcall
// does not track (unregistered: no grace period waits for it) may have taken a trampoline's
// jump to the veneer and not yet the veneer's own. It still reaches its target, and the next
// branch to that target reuses it.
TEST(VeneerLifetime, AVeneerToCodeOutsideTheArenaIsPinnedForThreadsNoGracePeriodWaitsFor) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  FarCode far(rt->arenaInfo());
  if (!far.ok()) GTEST_SKIP() << "no page more than 4 GiB from the arena";
  std::vector<const void*> targets = test::installTargets(*rt, 2, 40);
  Result<Key> key = rt->createKey(targets[0]);
  ASSERT_TRUE(key.isOk());
  std::vector<test::SiteCaller> callers = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(callers.size(), 1u);
  ASSERT_TRUE(rt->update(*key, far.fn(0)).isOk());
  uintptr_t veneer = destinationOf(callers[0].site);
  ASSERT_NE(veneer, reinterpret_cast<uintptr_t>(far.fn(0))) << "the site should call a veneer";

  ASSERT_TRUE(rt->update(*key, targets[1]).isOk());  // every branch moves off the veneer
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_EQ(rt->stats().veneersRetired, 0u);
  EXPECT_EQ(rt->stats().veneersFreed, 0u);
  EXPECT_FALSE(allFill(veneer, 16)) << "the veneer was freed while an untracked thread may be about to run it";
  auto viaVeneer = reinterpret_cast<int (*)()>(veneer);  // what a thread inside it runs next
  EXPECT_EQ(viaVeneer(), kFar0);
  EXPECT_EQ(callers[0].fn(), test::idOf(targets[1]));

  ASSERT_TRUE(rt->update(*key, far.fn(0)).isOk());  // the same far target again: the same veneer
  EXPECT_EQ(destinationOf(callers[0].site), veneer);
  EXPECT_EQ(callers[0].fn(), kFar0);
  EXPECT_EQ(rt->stats().veneers, 1u);
}

}  // namespace
}  // namespace patchcall

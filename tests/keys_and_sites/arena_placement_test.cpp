// Where the arena lies and which of its bytes are handed out first: the part from which a
// direct call (x86 rel32, A64 BL +-128 MiB) reaches the executable's text, so calls from JIT
// code to the runtime's C++ functions need no veneer. Both ISAs (A64 under qemu here).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "patchcall/runtime.h"

namespace {

using namespace patchcall;

extern "C" __attribute__((noinline)) int arenaPlacementTarget(int x) { return x + 1; }

TEST(ArenaPlacement, TheDefaultArenaHandsOutFirstWhatReachesTheTextWithoutAVeneer) {
  Options o;  // the default 256 MiB arena: on A64 more than BL reaches
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  ArenaInfo a = rt->arenaInfo();
  std::printf("[ info ] arena %p, %zu MiB, %lld bytes from the text; %zu MiB reach the text directly%s\n", a.rxBase,
              a.size >> 20, static_cast<long long>(a.distanceFromText), a.directReach >> 20,
              a.nearText ? " (all of it)" : "");
  if (a.directReach == 0) GTEST_SKIP() << "the address space left no room for the arena next to the text";
  EXPECT_EQ(a.nearText, a.directReach == a.size);
  // Keys (their trampolines are arena code) and blobs take the near end first: every one of
  // them reaches a C++ function of the executable with a plain branch.
  std::vector<Key> keys;
  for (int i = 0; i < 200; ++i) {
    Result<Key> k = rt->createKey(reinterpret_cast<const void*>(&arenaPlacementTarget));
    ASSERT_TRUE(k.isOk()) << k.status().toString();
    keys.push_back(*k);
  }
  EXPECT_EQ(rt->stats().veneers, 0u) << "a trampoline in the part of the arena handed out first needed a veneer to "
                                        "reach a C++ function of the executable";
  for (Key k : keys) {
    Result<const void*> t = rt->trampoline(k);
    ASSERT_TRUE(t.isOk()) << t.status().toString();
    auto call = reinterpret_cast<int (*)(int)>(const_cast<void*>(*t));
    ASSERT_EQ(call(41), 42) << "the trampoline of key " << k.id << " does not reach its target";
  }
}

TEST(ArenaPlacement, AnArenaWithinReachIsNearTextThroughout) {
  Options o;
  o.arenaSize = size_t{64} << 20;  // within BL's reach of the text, like x86's rel32 for any arena
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  ArenaInfo a = rt->arenaInfo();
  if (a.directReach == 0) GTEST_SKIP() << "the address space left no room for the arena next to the text";
  EXPECT_TRUE(a.nearText) << "arena " << a.rxBase << ", " << a.distanceFromText << " bytes from the text, "
                          << a.directReach << " of " << a.size << " bytes reach it";
  EXPECT_EQ(a.directReach, a.size);
}

}  // namespace

// fork(): parent and child share the code's pages until each one's first code write, which
// gives that process its own copy; with a code reservation outstanding the child gets its copy
// at the fork. Either way neither process's writes reach the other.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "far_code.h"
#include "fork_util.h"
#include "jit_targets.h"
#include "patchcall/runtime.h"

using namespace patchcall;
using namespace std::chrono_literals;
using test::idOf;
using test::runInChild;

namespace {

// The inode of the memfd mapped at `rx` (/proc/self/maps), 0 if no mapping starts there.
unsigned long codeInode(const void* rx) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto want = reinterpret_cast<uintptr_t>(rx);
  while (std::getline(maps, line)) {
    uintptr_t begin = 0, end = 0;
    char perms[8] = {};
    unsigned long offset = 0, inode = 0;
    unsigned major = 0, minor = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %7s %lx %x:%x %lu", &begin, &end, perms, &offset, &major, &minor,
                    &inode) == 7 &&
        begin == want) {
      return inode;
    }
  }
  return 0;
}

struct Fixture {
  Result<Runtime> rt = Runtime::create([] {
    Options o;
    o.backgroundReclaimer = false;  // no thread: the children run under qemu-user too
    return o;
  }());
  std::vector<const void*> t;
  Result<Key> key = Status(Error::kUnknownKey, "not created");
  std::vector<test::SiteCaller> callers;
  bool ok() const { return rt.isOk() && key.isOk() && callers.size() == 1; }
  Fixture() {
    if (!rt.isOk()) return;
    t = test::installTargets(*rt, 4, 500);
    if (t.size() != 4) return;
    key = rt->createKey(t[0], "shared");
    if (key.isOk()) callers = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  }
  const void* rx() { return rt->arenaInfo().rxBase; }
};

}  // namespace

// The child starts on the parent's pages (no copy on the way in) and copies at its first
// write, which leaves the parent's code as it was. Fails on a fork that copies at once.
TEST(ForkSharing, ChildStartsOnTheParentsPagesAndCopiesAtItsFirstWrite) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  const unsigned long parentInode = codeInode(f.rx());
  ASSERT_NE(parentInode, 0u) << "no mapping starts at the arena's RX base";
  EXPECT_FALSE(f.rt->arenaInfo().sharedAfterFork);
  std::string result = runInChild([&] {
    Runtime& rt = *f.rt;
    unsigned long inode = codeInode(f.rx());
    CHILD_CHECK(inode == parentInode, "the child starts on memfd inode %lu, the parent's is %lu (a copy at the fork)", inode,
                parentInode);
    CHILD_CHECK(rt.arenaInfo().sharedAfterFork, "sharedAfterFork is false in a child that wrote nothing");
    CHILD_CHECK(rt.stats().codeCopiesAfterFork == 0, "%" PRIu64 " copies before the first write", rt.stats().codeCopiesAfterFork);
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[0]), "the child's site returns %d before its update", f.callers[0].fn());
    CHILD_CHECK(rt.update(*f.key, f.t[1]).isOk(), "the child's update");
    inode = codeInode(f.rx());
    CHILD_CHECK(inode != parentInode && inode != 0, "after its first write the child still maps inode %lu", inode);
    CHILD_CHECK(!rt.arenaInfo().sharedAfterFork, "sharedAfterFork after the child's first write");
    CHILD_CHECK(rt.stats().codeCopiesAfterFork == 1, "%" PRIu64 " copies after one write", rt.stats().codeCopiesAfterFork);
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[1]), "the child's site returns %d after its update", f.callers[0].fn());
    CHILD_CHECK(rt.update(*f.key, f.t[2]).isOk(), "the child's second update");
    CHILD_CHECK(rt.stats().codeCopiesAfterFork == 1, "a second write copied again");
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(f.callers[0].fn(), idOf(f.t[0])) << "the child's update reached the parent's code";
  EXPECT_EQ(f.rt->site(f.callers[0].site)->target, f.t[0]);
  // The parent never knows whether the child still runs: it copies at its own first write.
  EXPECT_TRUE(f.rt->arenaInfo().sharedAfterFork);
  EXPECT_EQ(codeInode(f.rx()), parentInode);
  ASSERT_TRUE(f.rt->update(*f.key, f.t[3]).isOk());
  EXPECT_NE(codeInode(f.rx()), parentInode);
  EXPECT_EQ(f.rt->stats().codeCopiesAfterFork, 1u);
  EXPECT_EQ(f.callers[0].fn(), idOf(f.t[3]));
}

// The parent's copy is made while its other threads run the code (the views are replaced
// under them); the child, started before, still sees the code of its fork.
TEST(ForkSharing, ParentCopiesWhileItsThreadsRunTheCodeAndTheChildKeepsItsOwn) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  int toChild[2];
  ASSERT_EQ(pipe(toChild), 0);
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, wrong{0};
  std::vector<std::thread> runners;
  for (int i = 0; i < 2; ++i) {
    runners.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        int id = f.callers[0].fn();
        if (id < idOf(f.t[0]) || id > idOf(f.t[3])) wrong.fetch_add(1);
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  pid_t pid = test::forkChild([&] {
    char go = 0;
    if (read(toChild[0], &go, 1) != 1) return 2;
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[0]), "after the parent's updates the child's site returns %d", f.callers[0].fn());
    CHILD_CHECK(f.rt->arenaInfo().sharedAfterFork, "the child copied without writing");
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(f.rt->arenaInfo().sharedAfterFork);
  for (int round = 0; round < 50; ++round) {
    ASSERT_TRUE(f.rt->update(*f.key, f.t[1 + static_cast<size_t>(round) % 3]).isOk()) << "round " << round;
  }
  EXPECT_EQ(f.rt->stats().codeCopiesAfterFork, 1u);
  EXPECT_FALSE(f.rt->arenaInfo().sharedAfterFork);
  ASSERT_EQ(write(toChild[1], "g", 1), 1);
  EXPECT_EQ(test::waitDescribed(pid), "exit 0");
  long before = calls.load();
  std::this_thread::sleep_for(10ms);
  stop = true;
  for (auto& r : runners) r.join();
  EXPECT_GT(calls.load(), before) << "the running threads stopped making calls";
  EXPECT_EQ(wrong.load(), 0) << "calls returned values no target returns";
  for (int fd : toChild) close(fd);
}

// A reservation outstanding at the fork is written by its owner under no lock: the child gets
// its copy at the fork, and parent and child each commit their own bytes at the same address.
TEST(ForkSharing, OutstandingReservationMakesTheChildsCopyAtTheFork) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  const unsigned long parentInode = codeInode(f.rx());
  Result<CodeReservation> r = f.rt->reserveCode(16);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  // A target's 16 bytes (`result = id ; ret` and padding) run anywhere.
  auto commitCopyOf = [&](const void* target) {
    std::memcpy(r->rw, target, 16);
    return f.rt->commitCode(*r, {});
  };
  std::string result = runInChild([&] {
    unsigned long inode = codeInode(f.rx());
    CHILD_CHECK(inode != parentInode && inode != 0, "with a reservation outstanding the child shares inode %lu", inode);
    CHILD_CHECK(!f.rt->arenaInfo().sharedAfterFork, "the child's arena is marked shared");
    Result<Blob> b = commitCopyOf(f.t[2]);
    CHILD_CHECK(b.isOk(), "the child's commit: %s", b.status().toString().c_str());
    int id = reinterpret_cast<int (*)()>(const_cast<void*>(b->code))();
    CHILD_CHECK(id == idOf(f.t[2]), "the child's blob returns %d", id);
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_FALSE(f.rt->arenaInfo().sharedAfterFork);
  EXPECT_EQ(codeInode(f.rx()), parentInode) << "the parent moved to another memfd";
  Result<Blob> b = commitCopyOf(f.t[1]);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_EQ(reinterpret_cast<int (*)()>(const_cast<void*>(b->code))(), idOf(f.t[1]));
}

// A reservation made in a shared arena copies first; a blob freed there is filled with int3
// only once this process has its own copy (the parent's bytes stay as they were).
TEST(ForkSharing, ReserveCopiesFirstAndFreedCodeIsFilledOnlyInTheOwnCopy) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  // A copy of target 3's 16 bytes (`result = id ; ret` and padding) in a blob of its own.
  Result<Blob> doomed = f.rt->installCode(std::span<const uint8_t>(static_cast<const uint8_t*>(f.t[3]), 16), {});
  ASSERT_TRUE(doomed.isOk()) << doomed.status().toString();
  const void* doomedCode = doomed->code;
  uint8_t original[8];
  std::memcpy(original, doomedCode, sizeof original);
  std::string result = runInChild([&] {
    Runtime& rt = *f.rt;
    CHILD_CHECK(rt.retire(*doomed).isOk(), "retire in the child");
    CHILD_CHECK(rt.barrier(2000ms).isOk(), "barrier in the child");
    CHILD_CHECK(rt.stats().blobsFreed == 1, "%" PRIu64 " blobs freed", rt.stats().blobsFreed);
    CHILD_CHECK(std::memcmp(doomedCode, original, sizeof original) == 0, "a blob freed in the shared arena was overwritten");
    Result<CodeReservation> r = rt.reserveCode(64);
    CHILD_CHECK(r.isOk(), "reserve in the child: %s", r.status().toString().c_str());
    CHILD_CHECK(!rt.arenaInfo().sharedAfterFork && rt.stats().codeCopiesAfterFork == 1, "reserve did not copy first");
    auto* freed = static_cast<const uint8_t*>(doomedCode);
    CHILD_CHECK(freed[0] == freed[1] && freed[0] != original[0], "the freed blob is not filled in the child's own copy");
    rt.abandonCode(*r);
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(std::memcmp(doomedCode, original, sizeof original), 0) << "the child's free reached the parent's code";
  EXPECT_EQ(reinterpret_cast<int (*)()>(const_cast<void*>(doomedCode))(), idOf(f.t[3]));
}

// Three generations on one set of pages: each writer separates itself alone.
TEST(ForkSharing, GrandchildChildAndParentEachSeparateAtTheirOwnWrite) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  std::string result = runInChild([&] {
    std::string grandchild = runInChild([&] {
      CHILD_CHECK(f.rt->arenaInfo().sharedAfterFork, "the grandchild does not share");
      CHILD_CHECK(f.rt->update(*f.key, f.t[2]).isOk(), "the grandchild's update");
      CHILD_CHECK(f.callers[0].fn() == idOf(f.t[2]), "the grandchild's site returns %d", f.callers[0].fn());
      return 0;
    });
    CHILD_CHECK(grandchild == "exit 0", "the grandchild: %s", grandchild.c_str());
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[0]), "the grandchild's update reached the child: %d", f.callers[0].fn());
    CHILD_CHECK(f.rt->update(*f.key, f.t[1]).isOk(), "the child's update");
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[1]), "the child's site returns %d", f.callers[0].fn());
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(f.callers[0].fn(), idOf(f.t[0])) << "a descendant's update reached the parent";
  EXPECT_EQ(f.rt->stats().codeCopiesAfterFork, 0u);
}

// Only a write copies: an update to the key's current target, a refused update, an empty
// batch and destroying a key without sites write no code, so the child keeps sharing (fails
// when these paths copy before knowing whether they write); the first real update copies.
TEST(ForkSharing, CallsThatWriteNoCodeLeaveTheArenaShared) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  Result<Key> spare = f.rt->createKey(f.t[1], "spare");
  ASSERT_TRUE(spare.isOk()) << spare.status().toString();
  const unsigned long parentInode = codeInode(f.rx());
  std::string result = runInChild([&] {
    Runtime& rt = *f.rt;
    auto stillShared = [&](const char* after) {
      CHILD_CHECK(rt.arenaInfo().sharedAfterFork && rt.stats().codeCopiesAfterFork == 0 && codeInode(f.rx()) == parentInode,
                  "%s copied the code (sharedAfterFork %d, %" PRIu64 " copies)", after, rt.arenaInfo().sharedAfterFork,
                  rt.stats().codeCopiesAfterFork);
      return 0;
    };
    Result<const void*> same = rt.update(*f.key, f.t[0]);
    CHILD_CHECK(same.isOk() && *same == f.t[0], "the no-op update: %s", same.status().toString().c_str());
    if (int e = stillShared("an update to the current target")) return e;
    KeyUpdate batch[] = {{*f.key, f.t[0]}, {*spare, f.t[1]}};
    CHILD_CHECK(rt.updateBatch(batch).isOk(), "the no-op batch");
    if (int e = stillShared("a batch of updates to the current targets")) return e;
    CHILD_CHECK(rt.updateBatch(std::span<const KeyUpdate>()).isOk(), "the empty batch");
    if (int e = stillShared("an empty batch")) return e;
    CHILD_CHECK(rt.update(*f.key, nullptr).status().code() == Error::kNullTarget, "a null target was not refused");
    if (int e = stillShared("a refused update")) return e;
    CHILD_CHECK(rt.destroyKey(*spare).isOk(), "destroyKey of a key without sites");
    if (int e = stillShared("destroyKey")) return e;
    CHILD_CHECK(rt.update(*f.key, f.t[2]).isOk(), "the child's real update");
    CHILD_CHECK(!rt.arenaInfo().sharedAfterFork && rt.stats().codeCopiesAfterFork == 1, "the real update did not copy");
    CHILD_CHECK(f.callers[0].fn() == idOf(f.t[2]), "the child's site returns %d after its update", f.callers[0].fn());
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(f.callers[0].fn(), idOf(f.t[0])) << "the child's update reached the parent's code";
  ASSERT_TRUE(f.rt->update(*f.key, f.t[0]).isOk());
  EXPECT_TRUE(f.rt->arenaInfo().sharedAfterFork) << "the parent's no-op update copied";
  EXPECT_EQ(f.rt->stats().codeCopiesAfterFork, 0u);
}

// An update to a target out of the call's reach allocates a veneer while it plans, before it
// knows it writes: in a shared arena it copies first, in the child and in the parent (it was
// refused: "code allocated in an arena still shared").
TEST(ForkSharing, UpdateThatNeedsANewVeneerCopiesFirst) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  test::FarCode far(f.rt->arenaInfo());
  if (!far.ok()) GTEST_SKIP() << "no page more than 4 GiB from the arena";
  std::string result = runInChild([&] {
    Result<const void*> u = f.rt->update(*f.key, far.fn(0));
    CHILD_CHECK(u.isOk(), "the child's update to a far target: %s", u.status().toString().c_str());
    CHILD_CHECK(f.rt->stats().codeCopiesAfterFork == 1, "%" PRIu64 " copies", f.rt->stats().codeCopiesAfterFork);
    CHILD_CHECK(f.callers[0].fn() == 0xFA1, "the child's site returns %d", f.callers[0].fn());
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(f.callers[0].fn(), idOf(f.t[0])) << "the child's update reached the parent";
  Result<const void*> u = f.rt->update(*f.key, far.fn(1));
  ASSERT_TRUE(u.isOk()) << "the parent's update to a far target: " << u.status().toString();
  EXPECT_EQ(f.callers[0].fn(), 0xFA2);
  EXPECT_EQ(f.rt->stats().codeCopiesAfterFork, 1u);
}

// The child's copy cannot be made at the fork (here: no descriptor left for its memfd, with a
// reservation outstanding). The child still maps the parent's pages: its runtime refuses to
// write, and its end, which frees a blob whose grace period completes there (the parent's
// registered thread does not exist in the child), fills nothing into the parent's code.
TEST(ForkSharing, ChildWhoseCopyFailedNeverWritesTheParentsCode) {
  Fixture f;
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  Result<Blob> doomed = f.rt->installCode(std::span<const uint8_t>(static_cast<const uint8_t*>(f.t[3]), 16), {});
  ASSERT_TRUE(doomed.isOk()) << doomed.status().toString();
  const void* doomedCode = doomed->code;
  uint8_t original[16];
  std::memcpy(original, doomedCode, sizeof original);
  Result<CodeReservation> r = f.rt->reserveCode(16);  // outstanding: the fork must copy
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  {
    test::StuckParentThread stuck(*f.rt);  // holds the blob's grace period in this process
    ASSERT_TRUE(f.rt->retire(*doomed).isOk());
    rlimit before{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
    int lowestFree = dup(0);
    ASSERT_GE(lowestFree, 0);
    close(lowestFree);
    rlimit none = before;
    none.rlim_cur = static_cast<rlim_t>(lowestFree);  // the next descriptor is refused
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
    std::string result = runInChild([&] {
      setrlimit(RLIMIT_NOFILE, &before);
      alarm(20);
      Status refused = f.rt->update(*f.key, f.t[1]).status();
      CHILD_CHECK(!refused.isOk(), "the child's update of the parent's code was accepted");
      { Result<Runtime> gone = std::move(f.rt); }  // its end frees the retired blob
      return 0;
    });
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);
    EXPECT_EQ(result, "exit 0");
    EXPECT_EQ(std::memcmp(doomedCode, original, sizeof original), 0) << "the child's end wrote the parent's code";
    EXPECT_EQ(f.callers[0].fn(), idOf(f.t[0])) << "the child's update reached the parent";
  }
  f.rt->abandonCode(*r);
}

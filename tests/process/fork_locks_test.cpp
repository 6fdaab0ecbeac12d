// fork(): every lock the prepare handler holds lives on the fork page (runtime/fork_locks.h),
// which a child gets zero-filled; the child re-creates them and takes again the ones its
// forking thread held before the fork: the text mutex when a patch observer forks inside an
// update, the reclaimer's pass lock when a retire callback forks inside a pass. A runtime
// whose locks did not fit on the page (more runtimes than slots) forks the same way.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "fork_util.h"
#include "jit_targets.h"
#include "patchcall/runtime.h"
#include "patchcall/testing.h"

using namespace patchcall;
using namespace std::chrono_literals;
using test::idOf;
using test::runInChild;

namespace {

Options quietOptions() {
  Options o;
  o.arenaSize = size_t{1} << 20;
  o.backgroundReclaimer = false;  // no thread: the children run under qemu-user too
  return o;
}

// A runtime with `n` targets (ids from idBase), one key on the first and a Direct caller.
struct OneKey {
  Result<Runtime> rt;
  std::vector<const void*> t;
  Result<Key> key = Status(Error::kUnknownKey, "not created");
  std::vector<test::SiteCaller> callers;
  bool ok() const { return rt.isOk() && key.isOk() && callers.size() == 1; }
  OneKey(Options o, int n, int idBase) : rt(Runtime::create(std::move(o))) {
    if (!rt.isOk()) return;
    t = test::installTargets(*rt, n, idBase);
    if (t.size() == static_cast<size_t>(n)) key = rt->createKey(t[0]);
    if (key.isOk()) callers = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  }
};

// The child's checks after an update or a pass it inherited half done: it must finish it,
// then update, install and reclaim on its own. alarm(): a lock left held hangs the child.
int childCarriesOn(Runtime& rt, Key key, const std::vector<const void*>& t, const test::SiteCaller& caller) {
  alarm(20);
  CHILD_CHECK(rt.update(key, t[2]).isOk(), "the child's own update after the fork");
  CHILD_CHECK(caller.fn() == idOf(t[2]), "the child's site returns %d", caller.fn());
  int ran = 0;
  CHILD_CHECK(rt.retire([&] { ++ran; }).isOk(), "the child's retire");
  CHILD_CHECK(rt.barrier(5000ms).isOk() && ran == 1, "the child's barrier ran %d callbacks", ran);
  Result<CodeReservation> r = rt.reserveCode(64);
  CHILD_CHECK(r.isOk(), "the child's reserveCode: %s", r.status().toString().c_str());
  rt.abandonCode(*r);
  return 0;
}

}  // namespace

// The observer runs under the text mutex: the child inherits an update in progress, which
// finishes and unlocks in the child as in the parent. Without taking the re-created text
// mutex again the child's unlock leaves it unusable and its next update hangs.
TEST(ForkLocks, PatchObserverThatForksLeavesTheChildsTextMutexWorking) {
  pid_t child = -1;
  bool armed = false;  // fork in the update below, not while installing
  Options o = quietOptions();
  o.patchObserver = [&](const PatchEvent&) {
    if (!armed) return;
    armed = false;
    std::fflush(stderr);
    child = fork();
  };
  OneKey f(o, 3, 700);
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  auto& [rt, t, key, callers] = f;
  armed = true;
  Status updated = rt->update(*key, t[1]).status();
  if (child == 0) _exit(updated.isOk() && callers[0].fn() == idOf(t[1]) ? childCarriesOn(*rt, *key, t, callers[0]) : 2);
  ASSERT_GT(child, 0) << "the observer's fork failed";
  EXPECT_EQ(test::waitDescribed(child), "exit 0") << "2: the update the child inherited failed; signal: it hung";
  ASSERT_TRUE(updated.isOk()) << updated.toString();
  EXPECT_EQ(callers[0].fn(), idOf(t[1])) << "the child's writes reached the parent";
  EXPECT_TRUE(rt->update(*key, t[0]).isOk());
  EXPECT_EQ(callers[0].fn(), idOf(t[0]));
}

// A retire callback runs inside a reclaimer pass, which holds the pass lock: the child
// inherits the pass, finishes it and then reclaims on its own.
TEST(ForkLocks, RetireCallbackThatForksLeavesTheChildsReclaimerWorking) {
  OneKey f(quietOptions(), 3, 710);
  ASSERT_TRUE(f.ok()) << f.rt.status().toString();
  auto& [rt, t, key, callers] = f;
  pid_t child = -1;
  ASSERT_TRUE(rt->retire([&] {
                  std::fflush(stderr);
                  child = fork();
                }).isOk());
  Status passed = rt->barrier(5000ms);
  if (child == 0) _exit(passed.isOk() ? childCarriesOn(*rt, *key, t, callers[0]) : 2);
  ASSERT_GT(child, 0) << "the callback's fork failed";
  EXPECT_EQ(test::waitDescribed(child), "exit 0") << "2: the inherited pass failed; signal: it hung";
  EXPECT_TRUE(passed.isOk()) << passed.toString();
  EXPECT_EQ(callers[0].fn(), idOf(t[0])) << "the child's update reached the parent";
}

// More runtimes than the fork page has slots (10), one of them destroyed and created again
// (its slot reused): in the child every runtime updates its own code and the parent's stays.
TEST(ForkLocks, MoreRuntimesThanThePageHoldsAllForkCorrectly) {
  auto one = [] { return std::make_unique<OneKey>(quietOptions(), 2, 720); };
  std::vector<std::unique_ptr<OneKey>> all;
  for (int i = 0; i < 15; ++i) all.push_back(one());
  all[3] = one();  // the old one is destroyed after its successor took a slot
  all.erase(all.begin() + 5);
  all.push_back(one());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_TRUE(all[i]->ok()) << "runtime " << i;
  std::string result = runInChild([&] {
    alarm(20);
    for (size_t i = 0; i < all.size(); ++i) {
      OneKey& o = *all[i];
      CHILD_CHECK(o.rt->update(*o.key, o.t[1]).isOk(), "runtime %zu: the child's update", i);
      CHILD_CHECK(o.callers[0].fn() == idOf(o.t[1]), "runtime %zu: the child's site returns %d", i, o.callers[0].fn());
      CHILD_CHECK(o.rt->barrier(5000ms).isOk(), "runtime %zu: the child's barrier", i);
    }
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]->callers[0].fn(), idOf(all[i]->t[0])) << "runtime " << i << ": the child's update reached the parent";
    EXPECT_TRUE(all[i]->rt->update(*all[i]->key, all[i]->t[1]).isOk()) << "runtime " << i;
  }
}

// The reclaimer's condition variable and its "thread runs here" mark are on the fork page
// too: with background reclaimers whose threads wait on it, more runtimes than the page holds
// (the rest from the heap, copied by fork, re-created by the child) each start a thread of
// their own in the child at its first retirement, and the parents' threads go on.
TEST(ForkLocks, BackgroundReclaimersOnAndOffThePageStartTheirOwnThreadInTheChild) {
  PATCHCALL_SKIP_IF_EMULATED("threads in the parent across fork()");
  Options o = quietOptions();
  o.backgroundReclaimer = true;
  std::vector<std::unique_ptr<OneKey>> all;
  for (int i = 0; i < 15; ++i) all.push_back(std::make_unique<OneKey>(o, 2, 730 + 2 * i));
  for (size_t i = 0; i < all.size(); ++i) ASSERT_TRUE(all[i]->ok()) << "runtime " << i;
  std::this_thread::sleep_for(20ms);  // every parent thread waits on its condition variable
  std::string result = runInChild([&] {
    alarm(20);
    std::vector<std::atomic<bool>> ran(all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      CHILD_CHECK(all[i]->rt->retire([&ran, i] { ran[i] = true; }).isOk(), "runtime %zu: retire", i);
    }
    // Without barrier(): only the child's own reclaimer threads run the callbacks.
    auto end = std::chrono::steady_clock::now() + 10s;
    for (size_t i = 0; i < all.size(); ++i) {
      while (!ran[i].load() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
      CHILD_CHECK(ran[i].load(), "runtime %zu: no reclaimer thread of the child's ran its callback in 10 s", i);
    }
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  std::atomic<int> ran{0};
  for (auto& one : all) ASSERT_TRUE(one->rt->retire([&ran] { ++ran; }).isOk());
  auto end = std::chrono::steady_clock::now() + 10s;
  while (ran.load() < static_cast<int>(all.size()) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ran.load(), static_cast<int>(all.size())) << "the parent's reclaimer threads stopped after the fork";
}

// A child's reclaimer thread that starts at once (inherited work) runs user callbacks, which
// may call another runtime. It starts only once every runtime is the child's: before, a later
// runtime's locks were still the ones the parent's prepare took (held), and re-created under
// the callback waiting on them (it hung). The hook holds the child between the two runtimes.
TEST(ForkLocks, ChildReclaimerThreadsStartOnlyOnceEveryRuntimeIsTheChilds) {
  PATCHCALL_SKIP_IF_EMULATED("threads in the parent across fork()");
  Options o = quietOptions();
  o.backgroundReclaimer = true;
  OneKey first(o, 3, 760), second(o, 3, 770);  // in this order in the fork handlers' list
  ASSERT_TRUE(first.ok() && second.ok());
  const pid_t parent = getpid();
  std::atomic<int> childUpdate{-1};  // the callback's update in the child: 1 ok, 0 failed
  {
    test::StuckParentThread stuck(*first.rt);  // the callback waits in the parent
    ASSERT_TRUE(first.rt->retire([&] {
                  if (getpid() == parent) return;
                  childUpdate = second.rt->update(*second.key, second.t[1]).isOk() ? 1 : 0;
                }).isOk());
    patchcall::testing::setForkChildBetweenRuntimesHook([] { usleep(100 * 1000); });
    std::string result = runInChild([&] {
      alarm(20);
      auto end = std::chrono::steady_clock::now() + 10s;
      while (childUpdate.load() < 0 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
      CHILD_CHECK(childUpdate.load() == 1, "the callback's update of the second runtime: %d", childUpdate.load());
      CHILD_CHECK(second.callers[0].fn() == idOf(second.t[1]), "the second runtime's site returns %d",
                  second.callers[0].fn());
      return 0;
    });
    patchcall::testing::setForkChildBetweenRuntimesHook(nullptr);
    EXPECT_EQ(result, "exit 0");
  }
  EXPECT_TRUE(first.rt->barrier(5000ms).isOk());
  EXPECT_EQ(second.callers[0].fn(), idOf(second.t[0])) << "the child's update reached the parent";
}

// fork() while a retire callback runs that destroys another runtime (or creates one, or calls
// a runtime whose locks prepare took): prepare used to hold the runtimes' list and wait for
// the callback's pass, which waited for the list to untrack the runtime: both hung. prepare
// now backs off: it drops every lock it took when a pass is running, and tries again. The
// scenario runs in a helper process, so a hang is an alarm, not a stuck suite.
TEST(ForkLocks, ForkWaitsOutARetireCallbackThatDestroysARuntime) {
  PATCHCALL_SKIP_IF_EMULATED("threads started in a child (qemu-user aborts)");
  std::string result = runInChild([] {
    alarm(20);
    Options o = quietOptions();
    o.backgroundReclaimer = true;
    Result<Runtime> first = Runtime::create(o);
    auto doomed = std::make_unique<Result<Runtime>>(Runtime::create(o));
    CHILD_CHECK(first.isOk() && doomed->isOk(), "create");
    std::atomic<bool> inCallback{false}, destroyed{false};
    CHILD_CHECK(first->retire([&] {
                  inCallback = true;
                  std::this_thread::sleep_for(50ms);  // the fork's prepare runs meanwhile
                  doomed.reset();
                  destroyed = true;
                }).isOk(), "retire");
    while (!inCallback.load()) std::this_thread::sleep_for(1ms);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    CHILD_CHECK(pid > 0, "fork");
    int status = 0;
    waitpid(pid, &status, 0);
    CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the grandchild's status %d", status);
    CHILD_CHECK(destroyed.load(), "the callback did not finish before fork() returned");
    return 0;
  });
  EXPECT_EQ(result, "exit 0") << "signal 14: fork() and the callback deadlocked";
}

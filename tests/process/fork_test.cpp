// fork(): the child gets a private, consistent copy of everything patchcall owns, and
// neither process's updates reach the other's code, registry or trap table.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "fork_util.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace std::chrono_literals;
using test::idOf;
using test::installCallers;
using test::installTargets;
using test::SiteCaller;
using test::forkChild;
using test::runInChild;
using test::waitDescribed;

namespace {

// A runtime without the background reclaimer thread, which a child restarts: qemu-user 7.2
// aborts when a child of these tests' processes with more than one thread starts a thread
// (measured: 4 of 4 runs of each, `qemu_plugin_vcpu_init_hook: assertion failed`; `cpu_exec:
// assertion cpu == current_cpu` has been seen too), while children that start none run fine
// with other parent threads live at the fork. Every test whose point needs no reclaimer uses this.
Options withoutReclaimerThread() {
  Options o;
  o.backgroundReclaimer = false;
  return o;
}

// Everything a child's site must agree on: what it returns when called, what it decodes to
// and what the registry says.
int checkSite(Runtime& rt, Key key, const SiteCaller& c, const void* want, const char* who) {
  Result<const void*> t = rt.target(key);
  CHILD_CHECK(t.isOk() && *t == want, "%s: registry target %p, want %p", who, t.isOk() ? *t : nullptr, want);
  Result<SiteInfo> info = rt.site(c.site);
  CHILD_CHECK(info.isOk() && info->target == want, "%s: site decodes to %p, want %p", who,
              info.isOk() ? info->target : nullptr, want);
  int got = c.fn();
  CHILD_CHECK(got == idOf(want), "%s: site call returned %d, want %d", who, got, idOf(want));
  return 0;
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe(fd), 0); }
  ~Pipe() {
    for (int f : fd) if (f >= 0) close(f);
  }
  bool send() const { char c = 1; return write(fd[1], &c, 1) == 1; }
  bool receive() const { char c; return read(fd[0], &c, 1) == 1; }
};

class ForkForms : public ::testing::TestWithParam<SiteForm> {};

// Both without a reclaimer thread (what they check needs none), so they run under qemu-user.
TEST_P(ForkForms, ChildUpdateLeavesTheParentsCodeAndRegistryAlone) {
  PATCHCALL_SKIP_UNLESS_FORM(GetParam());
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 3, 100);
  ASSERT_EQ(t.size(), 3u);
  Result<Key> key = rt->createKey(t[0], "forked");
  ASSERT_TRUE(key.isOk());
  std::vector<SiteCaller> c = installCallers(*rt, {*key}, GetParam());
  ASSERT_EQ(c.size(), 1u);

  std::string child = runInChild([&] {
    Result<const void*> old = rt->update(*key, t[1]);
    CHILD_CHECK(old.isOk(), "update in the child: %s", old.status().toString().c_str());
    return checkSite(*rt, *key, c[0], t[1], "child after its update");
  });
  EXPECT_EQ(child, "exit 0");
  EXPECT_EQ(checkSite(*rt, *key, c[0], t[0], "parent after the child's update"), 0)
      << "the child's update reached the parent";
  // And the parent's own updates keep working.
  ASSERT_TRUE(rt->update(*key, t[2]).isOk());
  EXPECT_EQ(checkSite(*rt, *key, c[0], t[2], "parent after its own update"), 0);
}

TEST_P(ForkForms, ParentUpdateAfterForkLeavesTheChildAlone) {
  PATCHCALL_SKIP_UNLESS_FORM(GetParam());
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 2, 200);
  Result<Key> key = rt->createKey(t[0], "forked");
  ASSERT_TRUE(key.isOk());
  std::vector<SiteCaller> c = installCallers(*rt, {*key}, GetParam());
  ASSERT_EQ(c.size(), 1u);
  Pipe updated;
  pid_t pid = forkChild([&] {
    CHILD_CHECK(updated.receive(), "no word from the parent");
    return checkSite(*rt, *key, c[0], t[0], "child after the parent's update");
  });
  ASSERT_GT(pid, 0);
  Status s = rt->update(*key, t[1]).status();
  updated.send();
  EXPECT_TRUE(s.isOk()) << s.toString();
  EXPECT_EQ(waitDescribed(pid), "exit 0") << "the parent's update reached the child";
  EXPECT_EQ(checkSite(*rt, *key, c[0], t[1], "parent"), 0);
}

INSTANTIATE_TEST_SUITE_P(AllForms, ForkForms,
                         ::testing::Values(SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint),
                         [](const auto& info) {
                           switch (info.param) {
                             case SiteForm::kDirect: return std::string("Direct");
                             case SiteForm::kToggle: return std::string("Toggle");
                             default: return std::string("Breakpoint");
                           }
                         });

// The parent's breakpoint rounds write int3 into its own code only: a child calling the same
// sites never traps on an int3 its (copied) trap table knows nothing about.
TEST(Fork, ChildCallsSitesWhileTheParentRunsBreakpointUpdates) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 2, 300);
  std::vector<Key> keys;
  for (int i = 0; i < 8; ++i) keys.push_back(*rt->createKey(t[0]));
  std::vector<SiteCaller> c = installCallers(*rt, keys, SiteForm::kBreakpoint);
  ASSERT_EQ(c.size(), keys.size());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> updates{0};
  std::thread updater([&] {
    for (uint64_t i = 0; !stop.load(); ++i) {
      for (Key k : keys) (void)rt->update(k, t[i % 2]);
      updates.fetch_add(1);
    }
  });
  for (int child = 0; child < 6; ++child) {
    std::string result = runInChild([&] {
      auto end = std::chrono::steady_clock::now() + 150ms;
      uint64_t calls = 0;
      while (std::chrono::steady_clock::now() < end) {
        for (const SiteCaller& s : c) {
          int got = s.fn();
          CHILD_CHECK(got == idOf(t[0]) || got == idOf(t[1]), "call returned %d", got);
          ++calls;
        }
      }
      CHILD_CHECK(calls > 1000, "only %llu calls", static_cast<unsigned long long>(calls));
      return 0;
    });
    EXPECT_EQ(result, "exit 0") << "child " << child;
  }
  stop = true;
  updater.join();
  EXPECT_GT(updates.load(), 10u) << "the parent's updater barely ran";
  EXPECT_GT(rt->stats().trapsEmulated + updates.load(), 0u);
}

// 50 forks while another thread retargets keys of every form: each child finds every site
// decoding to (and calling) the target its own registry names, and can update on its own.
TEST(Fork, FiftyForksWhileAnotherThreadUpdatesEveryChildConsistent) {
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 4, 400);
  std::vector<Key> keys;
  std::vector<SiteCaller> callers;
  for (SiteForm form : test::siteForms()) {
    std::vector<Key> ks;
    for (int i = 0; i < 4; ++i) ks.push_back(*rt->createKey(t[0]));
    std::vector<SiteCaller> cs = installCallers(*rt, ks, form);
    ASSERT_EQ(cs.size(), ks.size());
    keys.insert(keys.end(), ks.begin(), ks.end());
    callers.insert(callers.end(), cs.begin(), cs.end());
  }
  std::atomic<bool> stop{false};
  std::thread updater([&] {
    std::vector<KeyUpdate> batch;
    for (uint64_t i = 0; !stop.load(); ++i) {
      batch.clear();
      for (size_t k = 0; k < keys.size(); ++k) batch.push_back({keys[k], t[(i + k) % 4]});
      (void)rt->updateBatch(batch);
    }
  });
  for (int n = 0; n < 50; ++n) {
    std::string result = runInChild([&] {
      for (size_t k = 0; k < keys.size(); ++k) {
        Result<const void*> want = rt->target(keys[k]);
        CHILD_CHECK(want.isOk(), "target: %s", want.status().toString().c_str());
        if (checkSite(*rt, keys[k], callers[k], *want, "child") != 0) return 1;
      }
      for (size_t k = 0; k < keys.size(); ++k) {
        CHILD_CHECK(rt->update(keys[k], t[3]).isOk(), "child update of key %zu", k);
        if (checkSite(*rt, keys[k], callers[k], t[3], "child after its update") != 0) return 1;
      }
      return 0;
    });
    ASSERT_EQ(result, "exit 0") << "fork " << n;
  }
  stop = true;
  updater.join();
}

TEST(Fork, ForeignSitesArePatchedInTheChildOnly) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 3, 500);
  test::ForeignPage page{test::mapForeignCode(rt->arenaInfo().rxBase, t[0])};
  ASSERT_NE(page.code, nullptr) << "no free page within reach of the arena";
  auto fn = reinterpret_cast<int (*)()>(page.code);
  Result<Key> key = rt->createKey(t[1], "foreign");
  ASSERT_TRUE(key.isOk());
  ASSERT_TRUE(rt->registerForeignSite(page.code + test::kForeignCallOffset, *key).isOk());
  ASSERT_EQ(fn(), idOf(t[1]));

  Pipe updated;
  pid_t pid = forkChild([&] {
    CHILD_CHECK(fn() == idOf(t[1]), "child starts with %d", fn());
    CHILD_CHECK(rt->update(*key, t[2]).isOk(), "child update");
    CHILD_CHECK(fn() == idOf(t[2]), "child's foreign call after its update returns %d", fn());
    CHILD_CHECK(updated.receive(), "no word from the parent");
    CHILD_CHECK(fn() == idOf(t[2]), "the parent's update reached the child's text: %d", fn());
    return 0;
  });
  ASSERT_GT(pid, 0);
  // Let the child update first; the parent's text must not follow it.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(fn(), idOf(t[1])) << "the child's update patched the parent's text";
  EXPECT_TRUE(rt->update(*key, t[0]).isOk());
  EXPECT_EQ(fn(), idOf(t[0]));
  updated.send();
  EXPECT_EQ(waitDescribed(pid), "exit 0");
}

// A child with no foreign site at the fork opens its own /proc/self/mem when it registers one:
// the registration and later updates patch the child's text, never the parent's.
TEST(Fork, ForeignSiteRegisteredInTheChildPatchesTheChildOnly) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 3, 700);
  test::ForeignPage page{test::mapForeignCode(rt->arenaInfo().rxBase, t[0])};
  ASSERT_NE(page.code, nullptr) << "no free page within reach of the arena";
  auto fn = reinterpret_cast<int (*)()>(page.code);
  Result<Key> key = rt->createKey(t[1], "child-foreign");
  ASSERT_TRUE(key.isOk());
  std::string result = runInChild([&] {
    Status reg = rt->registerForeignSite(page.code + test::kForeignCallOffset, *key);
    CHILD_CHECK(reg.isOk(), "registerForeignSite in the child: %s", reg.toString().c_str());
    CHILD_CHECK(fn() == idOf(t[1]), "child's call after registering returns %d", fn());
    CHILD_CHECK(rt->update(*key, t[2]).isOk(), "child update");
    CHILD_CHECK(fn() == idOf(t[2]), "child's call after its update returns %d", fn());
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(fn(), idOf(t[0])) << "the child's foreign-site writes reached the parent's text";
}

int plainFunction() { return 7; }

// In a frame of its own, which the caller scrubs once it returned: the Assembler and the
// handles hold the blob's address, and a stale copy on a live frame would pin the blob
// through the conservative stack scan. Installs `mov eax, 42`, points `key` (whose site `c`
// calls) at it, checks the call, points the key back and retires the blob.
__attribute__((noinline)) int installUseAndRetire(Runtime& rt, Key key, const SiteCaller& c) {
  jit::Assembler a(rt);
  test::emitSetResult(a, 42);
  test::emitRet(a);
  Result<Blob> blob = jit::install(a);
  CHILD_CHECK(blob.isOk(), "install in the child: %s", blob.status().toString().c_str());
  CHILD_CHECK(rt.update(key, blob->code).isOk(), "update in the child");
  CHILD_CHECK(c.fn() == 42, "site returns %d", c.fn());
  CHILD_CHECK(rt.update(key, reinterpret_cast<const void*>(&plainFunction)).isOk(), "update back");
  Status retired = rt.retire(*blob);
  CHILD_CHECK(retired.isOk(), "retire in the child: %s", retired.toString().c_str());
  return 0;
}

// The child owns a working runtime: install, update, retire, synchronize and barrier, with a
// thread of its own registered. With `reclaimer`, the parent's background reclaimer thread
// runs at the fork and must run again in the child, which waits for it to free the retired
// blob; without, the forking thread is the parent's only one and the child's barrier frees it.
void childOwnsAWorkingRuntime(bool reclaimer) {
  Options o;
  o.backgroundReclaimer = reclaimer;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<ThreadScope> self = rt->registerThread("forker");
  ASSERT_TRUE(self.isOk());
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&plainFunction), "k");
  ASSERT_TRUE(key.isOk());
  std::vector<SiteCaller> c = installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(c[0].fn(), 7);

  std::string result = runInChild([&] {
    uint64_t freedBefore = rt->stats().blobsFreed;
    if (installUseAndRetire(*rt, *key, c[0]) != 0) return 1;
    qtest::scrubDeadStack();  // that frame held the blob's address (and does at -O0 in copies)
    std::atomic<bool> stop{false};
    std::thread reader([&] {  // a registered thread of the child's own
      Result<ThreadScope> s = rt->registerThread("child-reader");
      if (!s) return;
      while (!stop.load()) safepoint();
    });
    Status sync = rt->synchronize(2000ms);
    CHILD_CHECK(sync.isOk(), "synchronize in the child: %s", sync.toString().c_str());
    Status barrier = Status::ok();
    if (reclaimer) {  // freed by the child's reclaimer, before any barrier
      auto end = std::chrono::steady_clock::now() + 5s;
      while (rt->stats().blobsFreed == freedBefore && std::chrono::steady_clock::now() < end) {
        safepoint();  // this thread is registered: the reclaimer's grace period waits for it
        std::this_thread::sleep_for(1ms);
      }
    } else {  // no reclaimer: the barrier frees it (with the child's reader still registered)
      barrier = rt->barrier(2000ms);
    }
    stop = true;
    reader.join();
    RuntimeStats st = rt->stats();
    CHILD_CHECK(st.blobsFreed > freedBefore, "the child's %s freed nothing (%llu grace periods, %llu pinned)",
                reclaimer ? "background reclaimer" : "barrier", static_cast<unsigned long long>(st.gracePeriods),
                static_cast<unsigned long long>(st.blobsPinnedByStacks));
    CHILD_CHECK(barrier.isOk(), "barrier in the child: %s", barrier.toString().c_str());
    CHILD_CHECK(rt->barrier(2000ms).isOk(), "barrier in the child");
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(c[0].fn(), 7) << "the child's updates reached the parent";
}

TEST(Fork, ChildInstallsUpdatesRetiresAndSynchronizesOnItsOwn) {
  PATCHCALL_SKIP_IF_EMULATED("its point is the parent's reclaimer thread, restarted in the child, and qemu-user 7.2 "
                             "aborts when a child of a process with a second thread starts a thread "
                             "(qemu_plugin_vcpu_init_hook: assertion failed); ...WithoutAReclaimerThread runs there");
  childOwnsAWorkingRuntime(true);
}

// The same with the forking thread alone in the parent (the child's own reader thread is then
// no problem for qemu-user): runs there too.
TEST(Fork, ChildInstallsUpdatesRetiresAndSynchronizesOnItsOwnWithoutAReclaimerThread) { childOwnsAWorkingRuntime(false); }

// Threads other than the forking one do not exist in the child: its grace periods must not
// wait for them (a registered parent thread that never passes a safepoint would hold them up).
TEST(Fork, ChildGracePeriodsDoNotWaitForTheParentsOtherThreads) {
  Options o = withoutReclaimerThread();
  o.graceDeadline = 3000ms;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  test::StuckParentThread stuck(*rt);
  std::string result = runInChild([&] {
    auto start = std::chrono::steady_clock::now();
    Status s = rt->synchronize(1000ms);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    CHILD_CHECK(s.isOk(), "synchronize in the child waited for a thread it does not have: %s", s.toString().c_str());
    CHILD_CHECK(ms < 500, "synchronize took %lld ms", static_cast<long long>(ms));
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
}

// A grace period in flight at fork arms the JIT poll byte; it cannot complete in the child
// (its other threads do not exist there), so the child's copy of the byte must be cleared or
// every poll in the child takes the slow path. A byte that was not armed stays 0.
TEST(Fork, PollFlagArmedAtForkIsClearedInTheChild) {
  Options o;
  o.graceDeadline = 3000ms;
  o.backgroundReclaimer = false;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::string quiet = runInChild([&] {
    CHILD_CHECK(*rt->safepointFlag() == 0, "an unarmed poll byte is %d in the child", *rt->safepointFlag());
    return 0;
  });
  EXPECT_EQ(quiet, "exit 0");

  std::atomic<bool> registered{false}, stop{false};
  std::thread stuck([&] {
    Result<ThreadScope> s = rt->registerThread("holds-the-grace-period");
    registered = true;
    while (!stop.load()) std::this_thread::sleep_for(1ms);  // online, never a safepoint
  });
  while (!registered.load()) std::this_thread::sleep_for(1ms);
  std::thread waiter([&] { (void)rt->synchronize(2000ms); });
  auto until = std::chrono::steady_clock::now() + 2s;
  while (*rt->safepointFlag() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  ASSERT_NE(*rt->safepointFlag(), 0) << "no grace period armed the poll byte";
  std::string armed = runInChild([&] {
    CHILD_CHECK(*rt->safepointFlag() == 0, "the poll byte armed by the parent's grace period is %d in the child",
                *rt->safepointFlag());
    return 0;
  });
  stop = true;
  stuck.join();
  waiter.join();
  EXPECT_EQ(armed, "exit 0");
}

// A child made without fork()'s atfork handlers (a raw fork system call, as vfork or clone
// users get) shares the parent's code: patching from it is refused, not done to the parent.
TEST(Fork, ChildWithoutAtforkHandlersIsRefused) {
  PATCHCALL_SKIP_IF_EMULATED("qemu-user ignores madvise(MADV_WIPEONFORK), which marks a raw fork's child");
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = installTargets(*rt, 2, 600);
  Result<Key> key = rt->createKey(t[0], "shared");
  ASSERT_TRUE(key.isOk());
  std::vector<SiteCaller> c = installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(c.size(), 1u);
  long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);  // a raw fork (aarch64 has no SYS_fork)
  if (pid == 0) {
    Result<const void*> r = rt->update(*key, t[1]);
    bool refused = !r.isOk() && r.code() == Error::kForkedChild;
    if (!refused) std::fprintf(stderr, "raw-fork child: update returned %s\n", r.status().toString().c_str());
    Status b = rt->barrier(100ms);
    Result<CodeReservation> res = rt->reserveCode(64);
    Result<Key> k2 = rt->createKey(t[1]);
    if (b.code() != Error::kForkedChild || res.code() != Error::kForkedChild || k2.code() != Error::kForkedChild ||
        rt->poll() != 0) {
      std::fprintf(stderr, "raw-fork child: barrier %s, reserveCode %s, createKey %s\n", b.toString().c_str(),
                   res.status().toString().c_str(), k2.status().toString().c_str());
      refused = false;
    }
    syscall(SYS_exit_group, refused ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  EXPECT_EQ(waitDescribed(static_cast<pid_t>(pid)), "exit 0");
  EXPECT_EQ(c[0].fn(), idOf(t[0])) << "a child without atfork handlers patched the parent's code";
}

// A fiber stack running on another thread at the fork has no saved context in the child: it
// is parked empty there, so the child can unregister it and its grace periods never wait.
TEST(Fork, StackRunningOnAnotherThreadIsParkedEmptyInTheChild) {
  Result<Runtime> rt = Runtime::create(withoutReclaimerThread());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  const size_t kSize = 64 * 1024;
  void* mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  Result<StackHandle> fiber = rt->registerStack(mem, kSize, "fiber-at-fork");
  ASSERT_TRUE(fiber.isOk()) << fiber.status().toString();
  std::atomic<int> state{0};
  std::thread runner([&] {
    Result<ThreadScope> s = rt->registerThread("runner");
    if (!s) return;
    // Told it runs on the fiber (the switch itself is not needed for this test); offline so
    // the parent's grace periods do not wait for it.
    if (!switchStack(*fiber).isOk() || !goOffline().isOk()) return;
    state = 1;
    while (state.load() != 2) std::this_thread::sleep_for(1ms);
    (void)goOnline();
    (void)switchToHomeStack();
  });
  while (state.load() != 1) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(rt->unregisterStack(*fiber).code(), Error::kInvalidArgument) << "running stacks are refused in the parent";
  std::string result = runInChild([&] {
    Status s = rt->unregisterStack(*fiber);
    CHILD_CHECK(s.isOk(), "unregisterStack in the child: %s", s.toString().c_str());
    Status g = rt->synchronize(1000ms);
    CHILD_CHECK(g.isOk(), "synchronize in the child: %s", g.toString().c_str());
    return 0;
  });
  state = 2;
  runner.join();
  EXPECT_EQ(result, "exit 0");
  EXPECT_TRUE(rt->unregisterStack(*fiber).isOk()) << "parked again in the parent";
  munmap(mem, kSize);
}

}  // namespace

// fork(): the child starts no thread of patchcall's until it needs one, and holds one copy of
// the code per runtime.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "fork_util.h"
#include "jit_targets.h"
#include "patchcall/runtime.h"

using namespace patchcall;
using namespace std::chrono_literals;
using test::idOf;
using test::runInChild;

namespace {

// Entries of /proc/self/<dir> whose `what(entry)` is true.
template <typename Pred>
int countProcEntries(const char* dir, Pred what) {
  int n = 0;
  if (DIR* d = opendir(dir)) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.' && what(std::string(dir) + "/" + e->d_name)) ++n;
    }
    closedir(d);
  }
  return n;
}

// Threads named as patchcall names its background reclaimer.
int reclaimerThreads() {
  return countProcEntries("/proc/self/task", [](const std::string& task) {
    std::string comm;
    std::getline(std::ifstream(task + "/comm"), comm);
    return comm == "patchcall-recl";
  });
}

// The count once it reaches `want` (a new thread names itself as it starts), or after 2 s.
int reclaimerThreadsSettled(int want) {
  auto end = std::chrono::steady_clock::now() + 2s;
  int n = reclaimerThreads();
  while (n != want && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(1ms);
    n = reclaimerThreads();
  }
  return n;
}

// Open descriptors of arena memfds (the arena's own, a fork's copy).
int codeMemfds() {
  return countProcEntries("/proc/self/fd", [](const std::string& fd) {
    char link[256] = {};
    ssize_t n = readlink(fd.c_str(), link, sizeof link - 1);
    return n > 0 && std::strstr(link, "memfd:patchcall-code") != nullptr;
  });
}

// Open descriptors of /proc/<pid>/mem.
int memDescriptorsOf(pid_t pid) {
  const std::string mem = "/proc/" + std::to_string(pid) + "/mem";
  return countProcEntries("/proc/self/fd", [&](const std::string& fd) {
    char link[256] = {};
    ssize_t n = readlink(fd.c_str(), link, sizeof link - 1);
    return n > 0 && mem == link;
  });
}

std::atomic<bool> gCallbackRan{false};

}  // namespace

// The child of a runtime with a background reclaimer runs its code without a thread of
// patchcall's: the thread starts with the child's first retirement (and then frees it).
TEST(ForkResources, ChildStartsItsReclaimerThreadWithItsFirstRetirementNotAtTheFork) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  ASSERT_EQ(reclaimerThreadsSettled(1), 1) << "the parent's reclaimer thread is not named patchcall-recl";
  std::vector<const void*> t = test::installTargets(*rt, 1, 300);
  Result<Key> key = rt->createKey(t[0], "k");
  ASSERT_TRUE(key.isOk());
  std::vector<test::SiteCaller> c = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(c.size(), 1u);
  std::string result = runInChild([&] {
    CHILD_CHECK(c[0].fn() == idOf(t[0]), "the child's site returns %d", c[0].fn());
    int before = reclaimerThreads();
    CHILD_CHECK(before == 0, "%d reclaimer threads in a child that retired nothing", before);
    // qemu-user 7.2 aborts when the child of a process with a second thread starts a thread
    // (qemu_plugin_vcpu_init_hook: assertion failed): the start itself is checked natively.
    if (test::emulated()) return 0;
    CHILD_CHECK(rt->retire([] {}).isOk(), "retire in the child");
    int after = reclaimerThreadsSettled(1);
    CHILD_CHECK(after == 1, "%d reclaimer threads after the child's first retirement", after);
    CHILD_CHECK(rt->barrier(2000ms).isOk(), "barrier in the child");
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
}

// Work queued at the fork is the child's to finish without being asked: its thread starts
// at once. Here a callback the parent cannot run (a registered parent thread never passes a
// safepoint) runs in the child, where that thread does not exist.
TEST(ForkResources, ChildInheritingQueuedWorkStartsItsReclaimerAtOnce) {
  PATCHCALL_SKIP_IF_EMULATED("the child starts a thread while the parent has others, which qemu-user 7.2 aborts on "
                             "(qemu_plugin_vcpu_init_hook: assertion failed)");
  Options o;
  o.graceDeadline = 200ms;  // the parent's pass times out, so fork() need not wait long for it
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  auto stuck = std::make_unique<test::StuckParentThread>(*rt);
  gCallbackRan = false;
  ASSERT_TRUE(rt->retire([] { gCallbackRan = true; }).isOk());
  std::string result = runInChild([&] {
    auto end = std::chrono::steady_clock::now() + 5s;
    while (!gCallbackRan.load() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
    CHILD_CHECK(gCallbackRan.load(), "the inherited callback did not run within 5 s (%d reclaimer threads)",
                reclaimerThreads());
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_FALSE(gCallbackRan.load()) << "the parent ran a callback its stuck thread should hold up";
  stuck.reset();
  EXPECT_TRUE(rt->barrier(2000ms).isOk());
  EXPECT_TRUE(gCallbackRan.load());
}

// Each child holds exactly one copy per runtime and sees the code as it was at its own fork;
// the parent keeps the descriptors it had. Nothing accumulates over forks.
TEST(ForkResources, EachForkLeavesOneCodeCopyInTheChildAndNoneInTheParent) {
  Options o;
  o.backgroundReclaimer = false;  // no thread: the children run under qemu-user too
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = test::installTargets(*rt, 4, 400);
  Result<Key> key = rt->createKey(t[0], "k");
  ASSERT_TRUE(key.isOk());
  std::vector<test::SiteCaller> c = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(c.size(), 1u);
  const int before = codeMemfds();
  ASSERT_GE(before, 1);
  for (int i = 0; i < 4; ++i) {
    const void* want = t[static_cast<size_t>(i)];
    ASSERT_TRUE(rt->update(*key, want).isOk());
    std::string result = runInChild([&] {
      int fds = codeMemfds();
      CHILD_CHECK(fds == before, "fork %d: the child holds %d code memfds, want %d", i, fds, before);
      Result<SiteInfo> info = rt->site(c[0].site);
      CHILD_CHECK(info.isOk() && info->target == want, "fork %d: the child's site decodes to %p, want %p", i,
                  info.isOk() ? info->target : nullptr, want);
      CHILD_CHECK(c[0].fn() == idOf(want), "fork %d: the child's site returns %d, want %d", i, c[0].fn(), idOf(want));
      return 0;
    });
    EXPECT_EQ(result, "exit 0") << "fork " << i;
    EXPECT_EQ(codeMemfds(), before) << "after fork " << i << ": the parent kept a copy's descriptor";
  }
}

// Every runtime holds /proc/self/mem open (foreign sites are written through it). A child's
// inherited descriptor names the parent's memory: the child handler closes it (a raw close,
// arch/*/raw_syscall.h), and a child with no foreign site opens none of its own.
TEST(ForkResources, ChildHoldsNoDescriptorOfTheParentsMemory) {
  Options o;
  o.backgroundReclaimer = false;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  const pid_t parent = getpid();
  const int before = memDescriptorsOf(parent);
  ASSERT_GE(before, 1) << "the runtime holds no /proc/self/mem";
  std::string result = runInChild([&] {
    int inherited = memDescriptorsOf(parent), own = memDescriptorsOf(getpid());
    CHILD_CHECK(inherited == 0, "%d descriptors still name the parent's memory (/proc/%d/mem)", inherited,
                static_cast<int>(parent));
    CHILD_CHECK(own == 0, "the child opened %d /proc/self/mem without a foreign site", own);
    return 0;
  });
  EXPECT_EQ(result, "exit 0");
  EXPECT_EQ(memDescriptorsOf(parent), before) << "the child's close reached the parent's descriptor";
}

// A retire callback that forks on the background reclaimer thread: in the child that thread
// is the forking one and goes on running the reclaimer's loop. The child's next retirement
// must not start a second loop (two loops, one never joined: its lock and condition variable
// would be destroyed under it at the runtime's end).
TEST(ForkResources, ForkFromACallbackOnTheReclaimerThreadStartsNoSecondLoopInTheChild) {
  PATCHCALL_SKIP_IF_EMULATED("a thread started in the child of a threaded process (qemu-user aborts)");
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  ASSERT_EQ(reclaimerThreadsSettled(1), 1);
  std::atomic<int> childStatus{-1};
  ASSERT_TRUE(rt->retire([&] {
                pid_t pid = fork();
                if (pid == 0) {
                  alarm(20);
                  if (!rt->retire([] {}).isOk()) _exit(2);
                  int loops = reclaimerThreadsSettled(2);  // 2: a second loop started
                  _exit(loops == 1 ? 0 : 10 + loops);
                }
                int status = 0;
                if (pid > 0) waitpid(pid, &status, 0);
                childStatus = pid < 0 ? -2 : status;
              }).isOk());
  auto end = std::chrono::steady_clock::now() + 20s;
  while (childStatus.load() == -1 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  int status = childStatus.load();
  ASSERT_GE(status, 0) << "the callback did not run or did not fork";
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "exit 2: the child's retire failed; 10 + n: n reclaimer loops in the child";
}

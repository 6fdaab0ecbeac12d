// fork() against every lock the other threads hold: the prepare handler takes the runtime's
// locks in the order the rest of the library takes them, so a fork never waits for a thread
// that waits for the fork. A deadlock here hangs; a watchdog turns it into a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "fork_util.h"
#include "jit_targets.h"
#include "patchcall/runtime.h"

using namespace patchcall;
using namespace std::chrono_literals;

namespace {

// Ends the test binary with a message if `done` is not called within `limit`: a deadlocked
// fork cannot be unwound, only reported.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, const char* what) : thread_([this, limit, what] {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
      std::fprintf(stderr, "DEADLOCK: %s did not finish within %lld s\n", what, static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::_Exit(3);
    }
  }) {}
  ~Watchdog() { done(); }
  void done() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Forks `forks` times (each child exits at once) while `work` runs in a loop on another thread.
void forkWhile(int forks, const std::function<void()>& work) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rounds{0};
  std::thread worker([&] {
    while (!stop.load()) work(), rounds.fetch_add(1);
  });
  while (rounds.load() == 0) std::this_thread::yield();
  for (int n = 0; n < forks; ++n) {
    std::string result = test::runInChild([] { return 0; });
    ASSERT_EQ(result, "exit 0") << "fork " << n;
  }
  stop = true;
  worker.join();
}

// A deferred update tells the background reclaimer (its queue lock) that it has something to
// publish while it holds the text mutex. A prepare handler that took the reclaimer's locks
// before the text mutex waited for the updater while the updater waited for it (the test hung
// within its 300 forks on x86).
TEST(ForkLockOrder, ForkWhileDeferredUpdatesWakeTheReclaimer) {
  PATCHCALL_SKIP_IF_EMULATED("each child starts a reclaimer thread (pending deferred updates), which qemu-user aborts on");
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> t = test::installTargets(*rt, 2, 500);
  Result<Key> key = rt->createKey(t[0]);
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  std::vector<test::SiteCaller> callers = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(callers.size(), 1u);
  UpdateOptions deferred;
  deferred.publish = Publish::kDeferred;
  uint64_t i = 0;
  Watchdog watchdog(60s, "300 forks beside deferred updates");
  forkWhile(test::scaled(300, 20), [&] {
    Status s = rt->update(*key, t[++i % 2], deferred).status();
    if (!s.isOk()) ADD_FAILURE() << s.toString();
  });
  watchdog.done();
  EXPECT_TRUE(rt->barrier().isOk());
}

// Retiring code and running retire callbacks (the reclaimer's locks, then the text mutex to
// free blobs) beside forks.
TEST(ForkLockOrder, ForkWhileCodeIsRetiredAndFreed) {
  PATCHCALL_SKIP_IF_EMULATED("each child inherits queued work and starts a reclaimer thread, which qemu-user aborts on");
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Watchdog watchdog(60s, "300 forks beside retirements");
  forkWhile(test::scaled(300, 20), [&] {
    const uint8_t code[64] = {};  // never run: only installed and freed
    Result<Blob> blob = rt->installCode(code, {});
    if (!blob.isOk()) return ADD_FAILURE() << blob.status().toString(), void();
    if (Status s = rt->retire(*blob); !s.isOk()) ADD_FAILURE() << s.toString();
    if (Status s = rt->retire([] {}); !s.isOk()) ADD_FAILURE() << s.toString();
  });
  watchdog.done();
  EXPECT_TRUE(rt->barrier().isOk());
}

}  // namespace

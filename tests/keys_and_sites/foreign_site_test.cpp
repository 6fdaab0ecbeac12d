// Foreign sites: a call in code patchcall did not emit, registered with registerForeignSite
// and written through /proc/self/mem with the ISA's protocol (x86-64: the breakpoint
// protocol, three syncs; aarch64: one aligned store of the whole BL, one sync). What is
// refused at registration and before each update: foreign_site_checks_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {

using Fn = int (*)();
using test::ForeignPage;
using test::idOf;
using test::installTargets;
using test::mapForeignCode;

// The form and the syncs of one foreign update on this ISA.
SiteForm foreignForm() { return test::hasToggleAndBreakpointForms() ? SiteForm::kBreakpoint : SiteForm::kDirect; }
uint64_t foreignUpdateSyncs() { return foreignForm() == SiteForm::kBreakpoint ? 3 : 1; }

void expectCallTo(const uint8_t* site, const void* target, const std::string& where) {
  EXPECT_EQ(test::directCallTarget(site), reinterpret_cast<uintptr_t>(target))
      << where << ": the call at " << static_cast<const void*>(site) << " does not reach " << target;
}

// Every byte of the page but the call's is what foreignCaller wrote.
void expectOnlyTheCallChanged(const uint8_t* code, const std::vector<uint8_t>& original) {
  for (size_t i = 0; i < original.size(); ++i) {
    if (i >= test::kForeignCallOffset && i < test::kForeignCallOffset + test::callSize()) continue;
    EXPECT_EQ(code[i], original[i]) << "byte " << i << " of the foreign function changed";
  }
}

// A runtime, `n` targets returning idBase + i, and a foreign page calling targets[0].
struct ForeignSetup {
  Result<Runtime> rt = Runtime::create();
  std::vector<const void*> targets;
  std::unique_ptr<ForeignPage> page;
  // Call through ASSERT_NO_FATAL_FAILURE.
  void make(int n, int idBase) {
    ASSERT_TRUE(rt.isOk()) << rt.status().toString();
    targets = installTargets(*rt, n, idBase);
    ASSERT_EQ(targets.size(), static_cast<size_t>(n));
    page = std::make_unique<ForeignPage>(mapForeignCode(rt->arenaInfo().rxBase, targets[0]));
    ASSERT_NE(page->code, nullptr) << "no free page within reach of the arena";
  }
};

TEST(ForeignSite, RegisteredCallFollowsTheKeyUntilUnregistered) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  ForeignSetup f;
  ASSERT_NO_FATAL_FAILURE(f.make(4, 50));
  std::vector<uint8_t> original(f.page->code, f.page->code + test::kForeignCallOffset + test::callSize() + 8);
  uint8_t* site = f.page->code + test::kForeignCallOffset;
  auto fn = reinterpret_cast<Fn>(f.page->code);
  ASSERT_EQ(fn(), idOf(f.targets[0])) << "the foreign code does not run as written";

  Result<Key> key = f.rt->createKey(f.targets[1], "foreign");
  ASSERT_TRUE(key.isOk());
  Status reg = f.rt->registerForeignSite(site, *key);
  ASSERT_TRUE(reg.isOk()) << reg.toString();
  expectCallTo(site, f.targets[1], "just registered");
  EXPECT_EQ(fn(), idOf(f.targets[1])) << "registering points the call at the key's target";
  Result<SiteInfo> info = f.rt->site(site);
  ASSERT_TRUE(info.isOk()) << info.status().toString();
  EXPECT_TRUE(info->foreign);
  EXPECT_EQ(info->form, foreignForm());
  EXPECT_EQ(info->key, *key);
  EXPECT_EQ(info->target, f.targets[1]);

  RuntimeStats before = f.rt->stats();
  ASSERT_TRUE(f.rt->update(*key, f.targets[2]).isOk());
  EXPECT_EQ(f.rt->stats().syncs - before.syncs, foreignUpdateSyncs()) << "syncs of one update of a foreign site";
  expectCallTo(site, f.targets[2], "after update");
  EXPECT_EQ(fn(), idOf(f.targets[2]));
  expectOnlyTheCallChanged(f.page->code, original);

  Status unreg = f.rt->unregisterForeignSite(site);
  ASSERT_TRUE(unreg.isOk()) << unreg.toString();
  ASSERT_TRUE(f.rt->update(*key, f.targets[3]).isOk());
  expectCallTo(site, f.targets[2], "after unregistering, updates no longer reach the site");
  EXPECT_EQ(fn(), idOf(f.targets[2]));
  EXPECT_EQ(f.rt->site(site).code(), Error::kUnknownSite);
  EXPECT_TRUE(f.rt->destroyKey(*key).isOk()) << "no site is bound to the key any more";
}

TEST(ForeignSite, RegistrationErrors) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  ForeignSetup f;
  ASSERT_NO_FATAL_FAILURE(f.make(1, 60));
  Result<Key> key = f.rt->createKey(f.targets[0]);
  ASSERT_TRUE(key.isOk());
  uint8_t* site = f.page->code + test::kForeignCallOffset;

  Status notACall = f.rt->registerForeignSite(f.page->code, *key);  // the prologue
  EXPECT_EQ(notACall.code(), Error::kUnsupportedSite) << notACall.toString();
  if (test::instructionAlignment() > 1) {
    Status misaligned = f.rt->registerForeignSite(site + 2, *key);
    EXPECT_EQ(misaligned.code(), Error::kInvalidArgument) << misaligned.toString();
    EXPECT_NE(misaligned.message().find("aligned"), std::string::npos) << misaligned.toString();
  }
  Status inArena = f.rt->registerForeignSite(const_cast<void*>(f.targets[0]), *key);
  EXPECT_EQ(inArena.code(), Error::kInvalidArgument) << inArena.toString();
  Status null = f.rt->registerForeignSite(nullptr, *key);
  EXPECT_EQ(null.code(), Error::kInvalidArgument) << null.toString();
  Status badKey = f.rt->registerForeignSite(site, Key{999999});
  EXPECT_EQ(badKey.code(), Error::kUnknownKey) << badKey.toString();
  Status unknown = f.rt->unregisterForeignSite(site);
  EXPECT_EQ(unknown.code(), Error::kUnknownSite) << unknown.toString();

  ASSERT_TRUE(f.rt->registerForeignSite(site, *key).isOk());
  Status twice = f.rt->registerForeignSite(site, *key);
  EXPECT_EQ(twice.code(), Error::kInvalidArgument) << twice.toString();
  EXPECT_TRUE(f.rt->unregisterForeignSite(site).isOk());
  EXPECT_EQ(f.rt->unregisterForeignSite(site).code(), Error::kUnknownSite);
}

// Callers run the foreign function while the key moves between three targets. Each call must
// return one of them; and a call that began after update i returned and ended before update
// i+1 began must return update i's target (invariant 3: once update() returns, no thread
// starts the old target). A write that is not made visible to the other cores (or, under
// qemu, a stale translation) fails the second check.
TEST(ForeignSite, ConcurrentCallersSeeAValidTargetAndTheNewOneOnceUpdateReturns) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  ForeignSetup f;
  ASSERT_NO_FATAL_FAILURE(f.make(3, 80));
  Result<Key> key = f.rt->createKey(f.targets[0], "foreign-concurrent");
  ASSERT_TRUE(key.isOk());
  ASSERT_TRUE(f.rt->registerForeignSite(f.page->code + test::kForeignCallOffset, *key).isOk());
  auto fn = reinterpret_cast<Fn>(f.page->code);

  const int updates = test::scaled(3000, 300);
  std::atomic<int> begun{0}, returned{0};  // updates begun / returned (update i moves to f.targets[i % 3])
  std::atomic<int> checkedWindow{-1};     // the latest update after which a caller made a whole call
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, strictCalls{0}, invalid{0}, stale{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&] {
      long n = 0, strict = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        int done = returned.load(std::memory_order_acquire);
        int r = fn();
        int started = begun.load(std::memory_order_acquire);
        ++n;
        if (r < 80 || r > 82) invalid.fetch_add(1);
        if (started == done) {  // the whole call ran between update `done` and the next
          ++strict;
          if (r != idOf(f.targets[static_cast<size_t>(done % 3)])) stale.fetch_add(1);
          checkedWindow.store(done, std::memory_order_release);
        }
      }
      calls.fetch_add(n), strictCalls.fetch_add(strict);
    });
  }
  for (int i = 1; i <= updates; ++i) {
    begun.store(i, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // visible before any of update i's writes
    Result<const void*> s = f.rt->update(*key, f.targets[static_cast<size_t>(i % 3)]);
    ASSERT_TRUE(s.isOk()) << "update " << i << ": " << s.status().toString();
    returned.store(i, std::memory_order_release);
    ASSERT_EQ(fn(), idOf(f.targets[static_cast<size_t>(i % 3)])) << "the updating thread's own call after update " << i;
    // Give the callers a window (a loaded machine may not run them between two updates at all):
    // until one has made a whole call after this update, for at most 2 ms.
    for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
         checkedWindow.load(std::memory_order_acquire) < i && std::chrono::steady_clock::now() < until;) {
      std::this_thread::yield();
    }
  }
  stop.store(true);
  for (std::thread& t : callers) t.join();
  std::printf("%d updates; %ld calls, %ld of them wholly between two updates\n", updates, calls.load(), strictCalls.load());
  EXPECT_EQ(invalid.load(), 0) << "calls that reached no target of the key";
  EXPECT_EQ(stale.load(), 0) << "calls that began after an update returned and still ran the old target";
  EXPECT_GT(strictCalls.load(), 0) << "no call ran wholly between two updates: the check saw nothing";
  EXPECT_TRUE(f.rt->unregisterForeignSite(f.page->code + test::kForeignCallOffset).isOk());
}

}  // namespace
}  // namespace patchcall

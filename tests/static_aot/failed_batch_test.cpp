// An AOT batch whose cross-core sync fails, while threads run its branches: before the tails
// are written every site is put back; after, the sites left an int3 keep their trap entries
// for good (later batches replace the generation those entries were published in), so no
// thread ever meets an int3 nobody owns.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "patchcall/static_key.h"
#include "patchcall/static_module.h"
#include "patchcall/testing.h"

PATCHCALL_DEFINE_STATIC_KEY_FALSE(gFailedBatchKey);
PATCHCALL_DEFINE_STATIC_KEY_FALSE(gRotatingKey);

namespace {

__attribute__((noinline)) int failedBatchBranch() {
  if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&gFailedBatchKey)) return 1;
  return 0;
}

__attribute__((noinline)) int rotatingBranch() {
  if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&gRotatingKey)) return 1;
  return 0;
}

struct Readers {
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, wrong{0};
  // Calls that started after the main thread set `settled` (nothing in flight can still
  // take the failed batch's direction) and still found the branch taken.
  std::atomic<bool> settled{false};
  std::atomic<long> settledCalls{0}, settledJumps{0};
  std::vector<std::thread> threads;
  Readers() {
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([this] {
        while (!stop.load(std::memory_order_relaxed)) {
          bool after = settled.load(std::memory_order_acquire);
          int r = failedBatchBranch() + 2 * rotatingBranch();
          if (r < 0 || r > 3) wrong.fetch_add(1);
          if (after) {
            settledCalls.fetch_add(1, std::memory_order_relaxed);
            if ((r & 1) != 0) settledJumps.fetch_add(1, std::memory_order_relaxed);
          }
          calls.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
  }
  // Bounded (10 s): the counts the test then checks say whether the readers ran.
  void waitCalls(long more) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (long want = calls.load() + more; calls.load() < want && std::chrono::steady_clock::now() < end;) {
      std::this_thread::yield();
    }
  }
  ~Readers() {
    stop.store(true);
    for (std::thread& t : threads) t.join();
  }
};

// The first byte of every branch of `key`.
std::vector<uint8_t> branchHeads(const void* key) {
  struct Walk {
    const void* key;
    std::vector<uint8_t> heads;
  } walk{key, {}};
  patchcall_static_sites_each(
      [](void* user, const patchcall_static_site_info* site) {
        auto* w = static_cast<Walk*>(user);
        if (site->object == w->key) w->heads.push_back(uint8_t{*static_cast<const volatile uint8_t*>(site->address)});
        return 0;
      },
      &walk);
  return walk.heads;
}

// Two batches of another key: the generation the failed batch's entries were published in
// is replaced.
void rotateGenerations() {
  for (int i = 0; i < 4; ++i) ASSERT_EQ(patchcall_static_key_set(&gRotatingKey.key, (i & 1) == 0 ? 1 : 0), PATCHCALL_OK);
}

struct ResetHooks {
  ~ResetHooks() {
    patchcall::testing::setSyncFailures(0, 0);
    patchcall::testing::setAfterBreakpointInt3Hook(nullptr);
  }
};

TEST(StaticAotFailedBatch, SyncFailureBeforeTheTailsPutsEverySiteBack) {
  ResetHooks reset;
  ASSERT_EQ(branchHeads(&gFailedBatchKey), std::vector<uint8_t>{0x0F}) << "one NOP5 branch expected";
  Readers readers;
  readers.waitCalls(1000);
  patchcall::testing::setSyncFailures(3, EIO);  // the sync after the int3s, all three attempts
  int e = patchcall_static_key_enable(&gFailedBatchKey);
  std::string message = patchcall_last_error_message();
  EXPECT_EQ(e, PATCHCALL_E_SYSTEM_ERROR) << message;
  EXPECT_NE(message.find("put back"), std::string::npos) << message;
  EXPECT_FALSE(patchcall_static_key_enabled(&gFailedBatchKey)) << "a failed enable keeps the key's state";
  EXPECT_EQ(branchHeads(&gFailedBatchKey), std::vector<uint8_t>{0x0F}) << "the branch is a NOP5 again, not an int3";
  rotateGenerations();
  readers.settled.store(true, std::memory_order_release);
  readers.waitCalls(10000);
  readers.settled.store(false, std::memory_order_release);
  EXPECT_EQ(readers.settledJumps.load(), 0) << "of " << readers.settledCalls.load()
                                            << " calls after the failed enable was undone, these jumped";
  EXPECT_GT(readers.settledCalls.load(), 0);
  ASSERT_EQ(patchcall_static_key_enable(&gFailedBatchKey), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(failedBatchBranch(), 1);
  EXPECT_EQ(readers.wrong.load(), 0);
  ASSERT_EQ(patchcall_static_key_disable(&gFailedBatchKey), PATCHCALL_OK);
}

TEST(StaticAotFailedBatch, SyncFailureAfterTheTailsKeepsTheInt3sEmulated) {
  ResetHooks reset;
  ASSERT_EQ(branchHeads(&gFailedBatchKey), std::vector<uint8_t>{0x0F}) << "one NOP5 branch expected";
  Readers readers;
  readers.waitCalls(1000);
  // After the int3s are written and synced, the next sync (the one after the tails) fails.
  patchcall::testing::setAfterBreakpointInt3Hook([] { patchcall::testing::setSyncFailures(3, EIO); });
  int e = patchcall_static_key_enable(&gFailedBatchKey);
  patchcall::testing::setAfterBreakpointInt3Hook(nullptr);
  EXPECT_EQ(e, PATCHCALL_E_SYSTEM_ERROR) << patchcall_last_error_message();
  ASSERT_EQ(branchHeads(&gFailedBatchKey), std::vector<uint8_t>{0xCC}) << "the branch stays an int3";
  // Its entry must outlive its generation: without it the next trap is nobody's and the
  // process dies of SIGTRAP here.
  rotateGenerations();
  readers.waitCalls(20000);
  rotateGenerations();
  readers.waitCalls(20000);
  EXPECT_EQ(readers.wrong.load(), 0);
  // patchcall did not write an int3 it could finish: the key refuses to flip that site.
  EXPECT_EQ(patchcall_static_key_enable(&gFailedBatchKey), PATCHCALL_E_UNSUPPORTED_SITE) << patchcall_last_error_message();
}

}  // namespace

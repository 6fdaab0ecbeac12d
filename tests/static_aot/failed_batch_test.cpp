// An AOT batch whose cross-core sync fails, while threads run its branches.
//  - x86-64 (the breakpoint protocol): before the tails are written every site is put back;
//    after, the sites left an int3 keep their trap entries for good (later batches replace the
//    generation those entries were published in), so no thread ever meets an int3 nobody owns.
//  - A64 (one word per site, one sync per batch, no trap): the words are written before the
//    sync, so a failed sync leaves every site holding its new instruction (as valid as the old
//    one for a core that has not synced) and the sync pending: SYSTEM_ERROR, the key keeps its
//    old state, and the next batch (even an empty one: the retry, whose words are already
//    there) syncs before it returns.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdint>
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
  // take the failed batch's direction) and still found the branch taken (or not taken).
  std::atomic<bool> settled{false};
  std::atomic<long> settledCalls{0}, settledJumps{0}, settledFalls{0};
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
            ((r & 1) != 0 ? settledJumps : settledFalls).fetch_add(1, std::memory_order_relaxed);
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

// Every branch of `key`: its address and its label (the record's `destination` while it jumps).
struct Branch {
  const void* address;
  const void* destination;
};
std::vector<Branch> branchesOf(const void* key) {
  struct Walk {
    const void* key;
    std::vector<Branch> branches;
  } walk{key, {}};
  patchcall_static_sites_each(
      [](void* user, const patchcall_static_site_info* site) {
        auto* w = static_cast<Walk*>(user);
        if (site->object == w->key) w->branches.push_back({site->address, site->destination});
        return 0;
      },
      &walk);
  return walk.branches;
}

struct ResetHooks {
  ~ResetHooks() {
    patchcall::testing::setSyncFailures(0, 0);
    patchcall::testing::setAfterBreakpointInt3Hook(nullptr);
  }
};

#if defined(__x86_64__)
// Two batches of another key: the generation the failed batch's entries were published in
// is replaced.
void rotateGenerations() {
  for (int i = 0; i < 4; ++i) ASSERT_EQ(patchcall_static_key_set(&gRotatingKey.key, (i & 1) == 0 ? 1 : 0), PATCHCALL_OK);
}

// The first byte of every branch of `key`.
std::vector<uint8_t> branchHeads(const void* key) {
  std::vector<uint8_t> heads;
  for (const Branch& b : branchesOf(key)) heads.push_back(uint8_t{*static_cast<const volatile uint8_t*>(b.address)});
  return heads;
}

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

#elif defined(__aarch64__)
patchcall_static_stats staticStats() {
  patchcall_static_stats st{};
  st.struct_size = sizeof st;
  EXPECT_EQ(patchcall_static_stats_get(&st), PATCHCALL_OK);
  return st;
}

// The word of every branch of `key`, as nop / b <label> (decoded here: this binary has no
// disassembler, and the A64 encodings are two).
enum class Word { kNop, kBToLabel, kOther };
std::vector<Word> branchWords(const void* key) {
  std::vector<Word> words;
  for (const Branch& b : branchesOf(key)) {
    uint32_t w;
    std::memcpy(&w, b.address, sizeof w);
    auto at = reinterpret_cast<uintptr_t>(b.address);
    int64_t imm26 = static_cast<int64_t>(w & 0x03FFFFFF);
    if (imm26 >= (int64_t{1} << 25)) imm26 -= int64_t{1} << 26;
    bool bToLabel = (w & 0xFC000000) == 0x14000000 && b.destination != nullptr &&
                    at + static_cast<uintptr_t>(imm26 * 4) == reinterpret_cast<uintptr_t>(b.destination);
    words.push_back(w == 0xD503201F ? Word::kNop : bToLabel ? Word::kBToLabel : Word::kOther);
  }
  return words;
}

TEST(StaticAotFailedBatch, A64SyncFailureLeavesTheWordsWrittenAndTheSyncPending) {
  ResetHooks reset;
  ASSERT_EQ(branchWords(&gFailedBatchKey), std::vector<Word>{Word::kNop}) << "one nop branch expected";
  Readers readers;
  readers.waitCalls(1000);
  patchcall_static_stats before = staticStats();
  patchcall::testing::setSyncFailures(3, EIO);  // the batch's one sync, all three attempts
  int e = patchcall_static_key_enable(&gFailedBatchKey);
  std::string message = patchcall_last_error_message();
  EXPECT_EQ(e, PATCHCALL_E_SYSTEM_ERROR) << message;
  EXPECT_NE(message.find("syncs first"), std::string::npos) << message;
  EXPECT_FALSE(patchcall_static_key_enabled(&gFailedBatchKey)) << "a failed enable keeps the key's state";
  EXPECT_EQ(branchWords(&gFailedBatchKey), std::vector<Word>{Word::kBToLabel}) << "the word is written before the sync";

  // The retry while the sync still fails: nothing to write (the word is there), the pending
  // sync fails again and stays pending.
  patchcall::testing::setSyncFailures(3, EIO);
  e = patchcall_static_key_enable(&gFailedBatchKey);
  message = patchcall_last_error_message();
  EXPECT_EQ(e, PATCHCALL_E_SYSTEM_ERROR) << message;
  EXPECT_NE(message.find("earlier batch failed again"), std::string::npos) << message;
  EXPECT_FALSE(patchcall_static_key_enabled(&gFailedBatchKey));

  // The retry that works: the empty batch's pending sync, no write.
  patchcall::testing::setSyncFailures(0, 0);
  patchcall_static_stats mid = staticStats();
  ASSERT_EQ(patchcall_static_key_enable(&gFailedBatchKey), PATCHCALL_OK) << patchcall_last_error_message();
  patchcall_static_stats after = staticStats();
  EXPECT_EQ(after.sites_written - mid.sites_written, 0u) << "the retry rewrote a word already written";
  EXPECT_EQ(after.syncs - mid.syncs, 1u) << "the retry must do the pending sync";
  EXPECT_EQ(after.sites_written - before.sites_written, 1u) << "one word written in all";
  EXPECT_EQ(after.traps_emulated, before.traps_emulated) << "A64 sites never trap";
  EXPECT_TRUE(patchcall_static_key_enabled(&gFailedBatchKey));
  readers.settled.store(true, std::memory_order_release);
  readers.waitCalls(10000);
  readers.settled.store(false, std::memory_order_release);
  EXPECT_EQ(readers.settledFalls.load(), 0) << "of " << readers.settledCalls.load()
                                            << " calls after the retry returned, these did not jump";
  EXPECT_GT(readers.settledCalls.load(), 0);
  EXPECT_EQ(failedBatchBranch(), 1);
  EXPECT_EQ(readers.wrong.load(), 0);
  ASSERT_EQ(patchcall_static_key_disable(&gFailedBatchKey), PATCHCALL_OK);
  EXPECT_EQ(branchWords(&gFailedBatchKey), std::vector<Word>{Word::kNop});
}

TEST(StaticAotFailedBatch, A64NextBatchDoesThePendingSync) {
  ResetHooks reset;
  ASSERT_EQ(branchWords(&gFailedBatchKey), std::vector<Word>{Word::kNop}) << "one nop branch expected";
  Readers readers;
  readers.waitCalls(1000);
  patchcall::testing::setSyncFailures(3, EIO);
  EXPECT_EQ(patchcall_static_key_enable(&gFailedBatchKey), PATCHCALL_E_SYSTEM_ERROR) << patchcall_last_error_message();
  EXPECT_EQ(branchWords(&gFailedBatchKey), std::vector<Word>{Word::kBToLabel});
  patchcall::testing::setSyncFailures(0, 0);
  // Another key's batch writes its words and syncs once: that sync covers the failed batch's
  // word too, so nothing is pending after it.
  patchcall_static_stats before = staticStats();
  ASSERT_EQ(patchcall_static_key_enable(&gRotatingKey), PATCHCALL_OK) << patchcall_last_error_message();
  patchcall_static_stats mid = staticStats();
  EXPECT_EQ(mid.syncs - before.syncs, 1u);
  ASSERT_EQ(patchcall_static_key_enable(&gFailedBatchKey), PATCHCALL_OK) << patchcall_last_error_message();
  patchcall_static_stats after = staticStats();
  EXPECT_EQ(after.syncs - mid.syncs, 0u) << "no sync was pending any more";
  EXPECT_EQ(after.sites_written - mid.sites_written, 0u);
  EXPECT_EQ(failedBatchBranch(), 1);
  EXPECT_EQ(rotatingBranch(), 1);
  EXPECT_EQ(readers.wrong.load(), 0);
  ASSERT_EQ(patchcall_static_key_disable(&gFailedBatchKey), PATCHCALL_OK);
  ASSERT_EQ(patchcall_static_key_disable(&gRotatingKey), PATCHCALL_OK);
}
#endif

}  // namespace

// A static call of compiled code (static_call_aot.h) set to NULL is a no-op on every ISA:
// the trampoline's first jump goes to its `ret` and inline calls become a NOP. (aarch64's former
// portable path once stored NULL in the target field, and the next call jumped to address 0.)
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "patchcall/error_codes.h"
#include "patchcall/static_call_aot.h"

namespace {
std::atomic<int> gHits{0};
void countHit(int n) { gHits.fetch_add(n, std::memory_order_relaxed); }
void countTwice(int n) { gHits.fetch_add(2 * n, std::memory_order_relaxed); }
}  // namespace

PATCHCALL_DEFINE_STATIC_CALL(null_test_hook, countHit);

namespace patchcall {
namespace {

const void* targetOf() {
  const void* t = &t;  // anything but NULL
  EXPECT_EQ(patchcall_static_call_target(&PATCHCALL_STATIC_CALL_OBJECT_(null_test_hook), &t), 0);
  return t;
}

TEST(StaticCallNull, NullTargetIsANoOpAndReadsBackAsNull) {
  gHits = 0;
  ASSERT_EQ(patchcall_static_call_update(null_test_hook, countHit), 0) << patchcall_last_error_message();
  PATCHCALL_STATIC_CALL(null_test_hook)(1);
  EXPECT_EQ(gHits.load(), 1);
  ASSERT_EQ(patchcall_static_call_update(null_test_hook, nullptr), 0) << patchcall_last_error_message();
  EXPECT_EQ(targetOf(), nullptr) << "a NULL target reads back as NULL";
  PATCHCALL_STATIC_CALL_COND(null_test_hook)(1);  // must return without calling anything
  EXPECT_EQ(gHits.load(), 1);
  ASSERT_EQ(patchcall_static_call_update(null_test_hook, countTwice), 0) << patchcall_last_error_message();
  EXPECT_EQ(targetOf(), reinterpret_cast<const void*>(&countTwice));
  PATCHCALL_STATIC_CALL(null_test_hook)(1);
  EXPECT_EQ(gHits.load(), 3);
}

// Callers run while the call moves between NULL and two targets: no call faults, and each adds
// 0, 1 or 2.
TEST(StaticCallNull, CallersNeverFaultWhileTheTargetMovesThroughNull) {
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::atomic<int> started{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t) {
    callers.emplace_back([&] {
      long n = 0;
      PATCHCALL_STATIC_CALL_COND(null_test_hook)(1), ++n;
      started.fetch_add(1);
      while (!stop.load(std::memory_order_relaxed)) PATCHCALL_STATIC_CALL_COND(null_test_hook)(1), ++n;
      calls.fetch_add(n);
    });
  }
  // The 600 updates take a few ms: a caller scheduled after them would test nothing (seen in CI).
  while (started.load() < 2) std::this_thread::yield();
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(patchcall_static_call_update(null_test_hook, nullptr), 0) << patchcall_last_error_message();
    ASSERT_EQ(patchcall_static_call_update(null_test_hook, i % 2 == 0 ? countHit : countTwice), 0);
  }
  stop = true;
  for (std::thread& t : callers) t.join();
  EXPECT_GT(calls.load(), 0);
  ASSERT_EQ(patchcall_static_call_update(null_test_hook, countHit), 0);
}

}  // namespace
}  // namespace patchcall

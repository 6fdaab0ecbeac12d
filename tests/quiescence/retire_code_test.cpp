// Retiring code blobs: targeted blobs are refused, freed code is int3-filled and counted, and
// a blob with a frame still executing in it (found by the conservative stack scan) is kept.
#include <gtest/gtest.h>
#include <signal.h>


#include "emulation.h"
#include "isa.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

int plainTarget() { return 1; }

// int f(): mov eax, value; ret
Result<Blob> emitReturn(Runtime& rt, int value) {
  jit::Assembler a(rt);
  test::emitSetResult(a, value);
  test::emitRet(a);
  return jit::install(a);
}

using IntFn = int (*)();

TEST(RetireCode, BlobStillTargetedByAKeyIsRefused) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> blob = emitReturn(*rt, 42);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  Result<Key> key = rt->createKey(blob->code, "tier-up");
  ASSERT_TRUE(key.isOk()) << key.status().toString();

  Status s = rt->retire(*blob);
  EXPECT_EQ(s.code(), Error::kStillTargeted) << s.toString();
  EXPECT_NE(s.message().find("tier-up"), std::string::npos) << "the error should name the key: " << s.message();
  // Refused means untouched: the blob and the key's trampoline still work, nothing is queued.
  EXPECT_EQ(reinterpret_cast<IntFn>(blob->code)(), 42);
  EXPECT_EQ(reinterpret_cast<IntFn>(const_cast<void*>(rt->trampoline(*key).value()))(), 42);
  EXPECT_EQ(rt->stats().blobsRetired, 0u);
  ASSERT_TRUE(rt->barrier(2000ms).isOk());
  EXPECT_NE(notAllFilled(blob->code, blob->size), "") << "a refused retire freed the blob";

  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&plainTarget)).isOk());
  s = rt->retire(*blob);
  EXPECT_TRUE(s.isOk()) << "retire after updating the key away: " << s.toString();
}

TEST(RetireCode, DoubleRetireAndBadHandlesAreRefused) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> blob = emitReturn(*rt, 7);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  ASSERT_TRUE(rt->retire(*blob).isOk());
  Status again = rt->retire(*blob);
  EXPECT_EQ(again.code(), Error::kDoubleRetire) << again.toString();
  // A retired blob is no valid target any more.
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&plainTarget));
  ASSERT_TRUE(key.isOk());
  Status retarget = rt->update(*key, blob->code).status();
  EXPECT_EQ(retarget.code(), Error::kRetiredTarget) << retarget.toString();

  ASSERT_TRUE(rt->barrier(2000ms).isOk());
  Status afterFree = rt->retire(*blob);
  EXPECT_EQ(afterFree.code(), Error::kDoubleRetire) << "retire of a freed blob: " << afterFree.toString();
  EXPECT_EQ(rt->stats().blobsRetired, 1u);
  EXPECT_EQ(rt->stats().blobsFreed, 1u);

  // Handles that name no blob of this runtime. runtime.h documents kUnknownSite for a bad
  // handle, the implementation returns kInvalidArgument: accept both until they agree.
  for (Blob bad : {Blob{}, Blob{999999, blob->code, blob->size}, Blob{blob->id, reinterpret_cast<void*>(&plainTarget), 16}}) {
    Status s = rt->retire(bad);
    EXPECT_TRUE(s.code() == Error::kUnknownSite || s.code() == Error::kInvalidArgument)
        << "retire(Blob{" << bad.id << ", " << bad.code << "}): " << s.toString();
  }
}

TEST(RetireCode, FreedBlobIsInt3FilledAndCounted) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> callee = rt->createKey(reinterpret_cast<const void*>(&plainTarget), "callee");
  ASSERT_TRUE(callee.isOk());
  // A blob with a bound site: freeing it must unregister the site too.
  jit::Assembler a(*rt);
  test::emitEnter(a);
  ASSERT_TRUE(jit::emitCall(a, *callee).isOk());
  test::emitLeave(a);
  test::emitAddResult(a, 40);
  test::emitRet(a);
  const uint32_t siteOffset = a.sites().at(0).offset;
  Result<Blob> blob = jit::install(a);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  ASSERT_EQ(reinterpret_cast<IntFn>(blob->code)(), 41);
  const void* site = static_cast<uint8_t*>(blob->code) + siteOffset;
  ASSERT_TRUE(rt->site(site).isOk());
  RuntimeStats before = rt->stats();
  std::vector<uint8_t> original = readBytes(blob->code, blob->size);

  {
    TestThread reader;  // registered, never at a safepoint: holds the grace period poll() starts
    ASSERT_TRUE(reader.registerWith(*rt, "held-reader").isOk());
    ASSERT_TRUE(rt->retire(*blob).isOk());
    EXPECT_EQ(rt->poll(), 0u) << "poll() freed the blob before any grace period";
    EXPECT_EQ(readBytes(blob->code, blob->size), original) << "the blob changed before its grace period";
    ASSERT_TRUE(reader.unregister());
  }
  Status s = rt->barrier(2000ms);
  ASSERT_TRUE(s.isOk()) << s.toString();

  EXPECT_EQ(notAllFilled(blob->code, blob->size), "") << "freed code at " << blob->code << " was "
                                                    << hexBytes(original);
  RuntimeStats after = rt->stats();
  EXPECT_EQ(after.blobsRetired - before.blobsRetired, 1u);
  EXPECT_EQ(after.blobsFreed - before.blobsFreed, 1u);
  EXPECT_EQ(before.blobs - after.blobs, 1u) << "the freed blob is still counted as live";
  EXPECT_EQ(before.sites - after.sites, 1u) << "the freed blob's site is still registered";
  EXPECT_EQ(rt->site(site).code(), Error::kUnknownSite) << "site lookup in freed code";
}

TEST(RetireCodeDeathTest, CallingFreedCodeTraps) {
  test::useThreadsafeDeathTests();
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> blob = emitReturn(*rt, 5);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  auto fn = reinterpret_cast<IntFn>(blob->code);
  ASSERT_EQ(fn(), 5);
  ASSERT_TRUE(rt->retire(*blob).isOk());
  ASSERT_TRUE(rt->barrier(2000ms).isOk());
  EXPECT_EXIT((void)fn(), ::testing::KilledBySignal(test::freedCodeSignal()), "");
}

// --- blobs pinned by a frame on some thread's stack ---------------------------------------

struct PinContext {
  std::atomic<bool> entered{false}, release{false};
  std::atomic<uint64_t> spins{0};
  std::atomic<const void*> pointer{nullptr};  // for holdPointer
};

// A C++ callee that sleeps offline, as a runtime would around a blocking call.
int sleepOffline(PinContext* c) {
  OfflineScope offline;
  c->entered = true;
  waitUntil([&] { return c->release.load(); }, 15000ms);
  return 7;
}

// A C++ callee that stays online, passing safepoints while it waits.
int spinInSafepoints(PinContext* c) {
  c->entered = true;
  auto end = Clock::now() + 15000ms;
  while (!c->release.load() && Clock::now() < end) {
    safepoint();
    std::this_thread::sleep_for(100us);
  }
  return 7;
}

// Keeps an interior pointer into the blob in a stack slot (as a runtime keeps a code pointer
// in a local) while passing safepoints online.
__attribute__((noinline)) int holdPointer(PinContext* c) {
  volatile uintptr_t saved = reinterpret_cast<uintptr_t>(c->pointer.exchange(nullptr));
  c->entered = true;
  passSafepointsUntil(c->release, 100us, 15000ms);
  return saved != 0 ? 107 : 0;
}

// int b(PinContext*): calls `callee` (rdi passes through) and adds 100 to its result, so the
// caller sees 107 only if B's code after the call was still intact when the callee returned.
Result<Blob> emitCallerOf(Runtime& rt, int (*callee)(PinContext*)) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  PATCHCALL_TRY(jit::emitFixedCall(a, reinterpret_cast<const void*>(callee)));
  test::emitLeave(a);
  test::emitAddResult(a, 100);
  test::emitRet(a);
  return jit::install(a);
}

// int b(PinContext*): a JIT loop with a poll that spins until release, then returns 107.
// While it runs, the poll stub's return address into B is on the stack at each safepoint.
Result<Blob> emitPollingLoop(Runtime& rt) {
  jit::Assembler a(rt);
  PATCHCALL_TRY(test::emitPollingSpin(a, offsetof(PinContext, spins), offsetof(PinContext, release)));
  test::emitSetResult(a, 107);
  test::emitRet(a);
  return jit::install(a);
}

// A registered worker calls blob B through a key's trampoline and is held inside B. The key is
// updated away and B retired: B must survive every barrier until the frame has returned.
void expectFrameOnStackPinsBlob(Result<Blob> (*emit)(Runtime&), const char* what) {
  static_assert(std::atomic<bool>::is_always_lock_free);
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> b = emit(*rt);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  Result<Key> key = rt->createKey(b->code, "pinned-entry");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  using EntryFn = int (*)(PinContext*);
  auto entry = reinterpret_cast<EntryFn>(const_cast<void*>(rt->trampoline(*key).value()));
  std::vector<uint8_t> original = readBytes(b->code, b->size);

  PinContext ctx;
  std::atomic<int> result{0};
  std::atomic<bool> finished{false}, stopWorker{false};
  TestThread worker;
  OnExit releaseOnExit([&] { ctx.release = true, stopWorker = true; });
  ASSERT_TRUE(worker.registerWith(*rt, "pinning-worker").isOk());
  worker.post([&] {
    result = entry(&ctx);  // through the trampoline: this frame never holds B's address itself
    scrubDeadStack();      // so the conservative scan does not find B's stale return address
    finished = true;
    passSafepointsUntil(stopWorker);  // stay registered and online: its own scans must come up empty
  });
  ASSERT_TRUE(waitUntil([&] { return ctx.entered.load() || ctx.spins.load() > 0; })) << what << ": B never ran";

  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&plainTarget)).isOk());
  Status retire = rt->retire(*b);
  ASSERT_TRUE(retire.isOk()) << retire.toString();
  Status held = rt->barrier(300ms);
  EXPECT_EQ(held.code(), Error::kTimeout) << what << ": barrier() returned while a frame was executing in B: "
                                          << held.toString();
  RuntimeStats pinned = rt->stats();
  EXPECT_GT(pinned.blobsPinnedByStacks, 0u) << what << ": no stack scan found B's address";
  EXPECT_EQ(pinned.blobsFreed, 0u) << what << ": B was freed under a live frame";
  EXPECT_EQ(readBytes(b->code, b->size), original) << what << ": B's bytes changed while a frame was in it";

  ctx.release = true;
  ASSERT_TRUE(waitUntil([&] { return finished.load(); })) << what << ": the worker never returned out of B";
  EXPECT_EQ(result.load(), 107) << what << ": B returned a wrong value";
  Status freed = rt->barrier(5000ms);
  EXPECT_TRUE(freed.isOk()) << what << ": B stayed pinned after its frame returned: " << freed.toString();
  EXPECT_EQ(rt->stats().blobsFreed, 1u);
  EXPECT_EQ(notAllFilled(b->code, b->size), "") << what;
}

Result<Blob> emitOfflineSleeper(Runtime& rt) { return emitCallerOf(rt, &sleepOffline); }
Result<Blob> emitOnlineSpinner(Runtime& rt) { return emitCallerOf(rt, &spinInSafepoints); }

// Not a frame in the blob, only a saved pointer into it: the scan is conservative, so that pins too.
TEST(RetireCodePinned, SavedPointerOnARegisteredThreadsStack) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> b = emitReturn(*rt, 3);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  PinContext ctx;
  ctx.pointer = static_cast<const uint8_t*>(b->code) + b->size / 2;
  std::atomic<bool> finished{false}, stopWorker{false};
  std::atomic<int> result{0};
  TestThread worker;
  OnExit releaseOnExit([&] { ctx.release = true, stopWorker = true; });
  ASSERT_TRUE(worker.registerWith(*rt, "pointer-holder").isOk());
  worker.post([&] {
    result = holdPointer(&ctx);
    scrubDeadStack();
    finished = true;
    passSafepointsUntil(stopWorker);
  });
  ASSERT_TRUE(waitUntil([&] { return ctx.entered.load(); }));
  ASSERT_TRUE(rt->retire(*b).isOk());
  Status held = rt->barrier(300ms);
  EXPECT_EQ(held.code(), Error::kTimeout) << "a pointer into the blob on a registered thread's stack did "
                                          << "not keep it: " << held.toString();
  EXPECT_GT(rt->stats().blobsPinnedByStacks, 0u);
  EXPECT_EQ(rt->stats().blobsFreed, 0u);
  ctx.release = true;
  ASSERT_TRUE(waitUntil([&] { return finished.load(); }));
  EXPECT_EQ(result.load(), 107);
  Status freed = rt->barrier(5000ms);
  EXPECT_TRUE(freed.isOk()) << "still pinned after the pointer's frame returned: " << freed.toString();
  EXPECT_EQ(notAllFilled(b->code, b->size), "");
}

TEST(RetireCodePinned, ReturnAddressOnAnOfflineSleepingThreadsStack) {
  expectFrameOnStackPinsBlob(&emitOfflineSleeper, "offline sleeper");
}
TEST(RetireCodePinned, ReturnAddressOnAnOnlineThreadPassingSafepointsInACallee) {
  expectFrameOnStackPinsBlob(&emitOnlineSpinner, "online callee in a safepoint loop");
}
TEST(RetireCodePinned, JitLoopPollingInsideTheRetiredBlob) {
  expectFrameOnStackPinsBlob(&emitPollingLoop, "JIT poll loop");
}

}  // namespace

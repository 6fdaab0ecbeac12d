// Stress: 8 registered threads call JIT code with safepoint polls through one key while the
// test thread emits, binds, retargets away from and retires 10,000 blobs. A call into freed
// (int3-filled) code would kill the process; every value a target returns is verified (a real
// token, of a blob already bound and not yet replaced when the call began); at the
// end every retired blob is freed (no leak) and its memory is int3.
// PATCHCALL_STRESS_BLOBS=<n> scales the blob count (default 10000).
#include <gtest/gtest.h>


#include <cstdlib>
#include <vector>

#include "emulation.h"
#include "isa.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

// Blob i returns (i << 12) | check(i): a torn, stale or garbage call cannot forge one.
uint32_t checkBits(uint32_t i) { return ((i * 2654435761u) >> 20) & 0xFFF; }
uint32_t tokenFor(uint32_t i) { return (i << 12) | checkBits(i); }
bool decodeToken(uint32_t v, uint32_t* i) {
  *i = v >> 12;
  return (v & 0xFFF) == checkBits(*i);
}
int initialTarget() { return static_cast<int>(tokenFor(0)); }

uint32_t blobCount() {
  const char* env = std::getenv("PATCHCALL_STRESS_BLOBS");
  long n = env != nullptr ? std::strtol(env, nullptr, 10) : 0;
  return n > 0 && n < (1 << 20) ? static_cast<uint32_t>(n) : test::scaled<uint32_t>(10000, 100);
}

// Target i: poll (so threads are sometimes at a safepoint inside it), return its token.
Result<Blob> emitTarget(Runtime& rt, uint32_t i) {
  jit::Assembler a(rt);
  PATCHCALL_TRY(jit::emitSafepointPoll(a));
  test::emitSetResult(a, tokenFor(i));
  test::emitRet(a);
  return jit::install(a);
}

// The callers' code: poll, then call whatever the key targets now.
Result<Blob> emitCaller(Runtime& rt, Key key) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  PATCHCALL_TRY(jit::emitSafepointPoll(a));
  PATCHCALL_TRY(jit::emitCall(a, key, SiteForm::kDirect));
  test::emitLeave(a);
  test::emitRet(a);
  return jit::install(a);
}

struct alignas(64) CallerStats {  // one cache line per caller thread
  uint64_t calls = 0, forged = 0, fromTheFuture = 0, stale = 0, changes = 0;
  uint32_t firstBadValue = 0;
};

TEST(QuiescenceStress, CallersWithPollsWhileTenThousandBlobsAreRetired) {
  const uint32_t kBlobs = blobCount();
  constexpr int kCallers = 8;
  DiagnosticLog log;
  Options o;
  o.graceDeadline = 20000ms;
  o.diagnosticSink = log.sink();
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&initialTarget), "stress-target");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  Result<Blob> caller = emitCaller(*rt, *key);
  ASSERT_TRUE(caller.isOk()) << caller.status().toString();
  auto callerFn = reinterpret_cast<int (*)()>(caller->code);
  ASSERT_EQ(callerFn(), initialTarget());
  RuntimeStats before = rt->stats();

  std::atomic<uint32_t> bound{0};  // highest i the key may target (published before binding it)
  std::atomic<uint32_t> floor{0};  // lowest i a call may land on (published after update() returned)
  std::atomic<bool> stop{false};
  std::vector<CallerStats> results(kCallers);
  std::vector<std::jthread> callers;
  OnExit stopOnExit([&] { stop = true; });  // declared after `callers`: runs before they join
  std::atomic<int> registered{0};
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      Result<ThreadScope> scope = rt->registerThread("stress-caller-" + std::to_string(c));
      if (!scope) return;
      registered.fetch_add(1);
      CallerStats& st = results[c];
      uint32_t last = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        uint32_t lowest = floor.load(std::memory_order_acquire);
        auto v = static_cast<uint32_t>(callerFn());
        uint32_t i = 0;
        ++st.calls;
        if (!decodeToken(v, &i)) {
          if (st.forged++ == 0) st.firstBadValue = v;
        } else if (i > bound.load(std::memory_order_acquire)) {
          if (st.fromTheFuture++ == 0) st.firstBadValue = v;
        } else if (i != 0 && i < lowest) {  // invariant 3; token 0 is the final C++ target
          if (st.stale++ == 0) st.firstBadValue = v;
        }
        if (i != last) ++st.changes, last = i;
      }
    });
  }
  ASSERT_TRUE(waitUntil([&] { return registered.load() == kCallers; })) << "callers failed to register";

  // Emit blob i, bind the key to it (retargeting away from i-1), retire i-1.
  auto t0 = Clock::now();
  std::vector<Blob> blobs;
  blobs.reserve(kBlobs);
  for (uint32_t i = 1; i <= kBlobs; ++i) {
    Result<Blob> b = emitTarget(*rt, i);
    ASSERT_TRUE(b.isOk()) << "blob " << i << ": " << b.status().toString();
    bound.store(i, std::memory_order_release);
    Result<const void*> old = rt->update(*key, b->code);
    ASSERT_TRUE(old.isOk()) << "binding blob " << i << ": " << old.status().toString();
    floor.store(i, std::memory_order_release);  // update() synced every core: i-1 is history
    if (i > 1) {
      ASSERT_EQ(old.value(), blobs.back().code) << "the key did not target blob " << i - 1;
      Status s = rt->retire(blobs.back());
      ASSERT_TRUE(s.isOk()) << "retiring blob " << i - 1 << ": " << s.toString();
    }
    blobs.push_back(*b);
    // Let the reclaimer in now and then, so freed memory is reused while callers run (a
    // tight install loop can starve it of the text mutex).
    if (i % 256 == 0) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&initialTarget)).isOk());
  ASSERT_TRUE(rt->retire(blobs.back()).isOk());
  long long emitMs = msSince(t0);

  // Reclaim everything while the callers keep running.
  Status s = rt->barrier(20000ms);
  long long totalMs = msSince(t0);
  ASSERT_TRUE(s.isOk()) << s.toString() << "\n" << log.all();
  stop = true;
  callers.clear();  // joins

  RuntimeStats after = rt->stats();
  uint64_t calls = 0, changes = 0;
  for (int c = 0; c < kCallers; ++c) {
    const CallerStats& st = results[c];
    calls += st.calls, changes += st.changes;
    EXPECT_GT(st.calls, 0u) << "caller " << c << " never ran";
    EXPECT_EQ(st.forged, 0u) << "caller " << c << " got " << st.forged << " values no blob returns, first 0x"
                             << std::hex << st.firstBadValue;
    EXPECT_EQ(st.fromTheFuture, 0u) << "caller " << c << " called a blob before it was bound, first 0x"
                                    << std::hex << st.firstBadValue;
    EXPECT_EQ(st.stale, 0u) << "caller " << c << " started " << st.stale << " calls that reached a target "
                            << "replaced before the call began, first 0x" << std::hex << st.firstBadValue;
  }
  EXPECT_EQ(after.blobsRetired - before.blobsRetired, kBlobs);
  EXPECT_EQ(after.blobsFreed - before.blobsFreed, kBlobs) << "retired blobs leaked";
  EXPECT_EQ(after.blobs, before.blobs) << "live blobs left behind besides the caller";
  size_t notFreed = 0;
  std::string firstNotFreed;
  for (uint32_t i = 0; i < kBlobs; ++i) {
    std::string why = notAllFilled(blobs[i].code, blobs[i].size);
    if (!why.empty() && notFreed++ == 0) firstNotFreed = "blob " + std::to_string(i + 1) + ": " + why;
  }
  EXPECT_EQ(notFreed, 0u) << "retired blobs whose memory is not int3-filled; " << firstNotFreed;
  EXPECT_EQ(callerFn(), initialTarget());
  std::printf("[ info ] %u blobs emitted+bound+retired in %lld ms, all freed after %lld ms; %d callers made "
              "%llu calls and saw the target change %llu times; %llu grace periods, %llu blob-rounds "
              "pinned by stacks\n",
              kBlobs, emitMs, totalMs, kCallers, static_cast<unsigned long long>(calls),
              static_cast<unsigned long long>(changes),
              static_cast<unsigned long long>(after.gracePeriods - before.gracePeriods),
              static_cast<unsigned long long>(after.blobsPinnedByStacks - before.blobsPinnedByStacks));
}

}  // namespace

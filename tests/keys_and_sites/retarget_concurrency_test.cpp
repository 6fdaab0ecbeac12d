// Invariant 2 of DESIGN.md under load: threads keep calling JIT code through a patchable
// site (and C++ through the key's trampoline) while another thread retargets the key
// between several targets. Every call must land on a target that was current at some moment
// of that call's window; a torn or stale call is a violation (a torn one usually crashes).
//
// The updater announces version v (the v-th update) before writing and publishes it after
// update() returns. A caller reads `lo = published` before the call and `hi = announced`
// after it: the targets current during the call are exactly history[lo..hi].
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "isa.h"
#include "emulation.h"
#include "patchcall/jit.h"
#include "jit_targets.h"

namespace patchcall {
namespace {

using Clock = std::chrono::steady_clock;

template <int N>
__attribute__((noinline)) int cxxIdentity() {
  asm volatile("");  // keep distinct bodies (no identical-code folding)
  return N;
}

constexpr int kCallerThreads = 4;
constexpr int kTargets = 6;  // 3 C++ functions, 3 JIT blobs

struct Shared {
  std::vector<uint8_t> history;  // history[v]: id of the target installed by update v
  std::atomic<uint64_t> announced{0}, published{0};
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};  // callers registered and about to call
  std::atomic<uint64_t> calls{0}, violations{0};
  std::atomic<uint64_t> hits[kTargets] = {};
  std::mutex reportMutex;
  std::vector<std::string> reports;  // the first few violations, for the failure message

  // Called by a caller thread with the window it observed around one call.
  void check(int id, uint64_t lo, uint64_t hi, const char* who) {
    calls.fetch_add(1, std::memory_order_relaxed);
    if (id >= 0 && id < kTargets) hits[id].fetch_add(1, std::memory_order_relaxed);
    for (uint64_t v = lo; v <= hi; ++v) {
      if (history[v] == id) return;
    }
    violations.fetch_add(1);
    std::lock_guard<std::mutex> lock(reportMutex);
    if (reports.size() < 5) {
      std::string current;
      for (uint64_t v = lo; v <= hi && v < lo + 8; ++v) current += std::to_string(history[v]) + " ";
      reports.push_back(std::string(who) + ": call returned target " + std::to_string(id) + " but window [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "] only had targets " + current);
    }
  }
};

using test::installReturner;

// sub rsp,8 ; poll ; call <site bound to key> ; add rsp,8 ; ret
using CallerFn = int (*)();
CallerFn installCaller(Runtime& rt, Key key, SiteForm form) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  EXPECT_TRUE(jit::emitSafepointPoll(a).isOk());
  Status s = jit::emitCall(a, key, form);
  EXPECT_TRUE(s.isOk()) << s.toString();
  test::emitLeave(a);
  test::emitRet(a);
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  return b.isOk() ? reinterpret_cast<CallerFn>(b->code) : nullptr;
}

struct Scenario {
  const char* name;
  SiteForm form;
  uint64_t updates;
};

void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name << " sites, " << s.updates << " updates"; }

class RetargetConcurrency : public ::testing::TestWithParam<Scenario> {};

TEST_P(RetargetConcurrency, EveryCallLandsOnATargetCurrentDuringIt) {
  Scenario sc = GetParam();
  PATCHCALL_SKIP_UNLESS_FORM(sc.form);
  sc.updates = test::scaled<uint64_t>(sc.updates, 100);
  // The C++ targets within a direct call's reach, as on x86-64: the trampoline caller below is
  // not registered, and a veneer is freed a grace period after its last caller moved away,
  // which covers registered threads only (aarch64's BL reaches 128 MiB, less than the default
  // arena beside the text).
  Options o;
  o.arenaSize = test::arenaSizeWithinCallReach();
  Result<Runtime> r = Runtime::create(o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;

  const void* targets[kTargets] = {
      reinterpret_cast<const void*>(&cxxIdentity<0>), reinterpret_cast<const void*>(&cxxIdentity<1>),
      reinterpret_cast<const void*>(&cxxIdentity<2>), installReturner(rt, 3),
      installReturner(rt, 4), installReturner(rt, 5)};
  for (const void* t : targets) ASSERT_NE(t, nullptr);

  Result<Key> key = rt.createKey(targets[0], "concurrency");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  CallerFn jitCaller = installCaller(rt, *key, sc.form);
  ASSERT_NE(jitCaller, nullptr);
  Result<const void*> tramp = rt.trampoline(*key);
  ASSERT_TRUE(tramp.isOk()) << tramp.status().toString();
  auto trampolineCaller = reinterpret_cast<CallerFn>(const_cast<void*>(*tramp));

  Shared sh;
  sh.history.assign(sc.updates + 1, 0);  // history[0]: the initial target, id 0

  std::vector<std::thread> callers;
  std::vector<uint64_t> callsPerThread(kCallerThreads + 1, 0);
  for (int t = 0; t <= kCallerThreads; ++t) {
    bool viaTrampoline = t == kCallerThreads;  // one extra thread calls from C++
    callers.emplace_back([&, t, viaTrampoline] {
      // JIT callers poll, so they must be registered; the C++ caller never polls.
      std::optional<ThreadScope> scope;
      if (!viaTrampoline) {
        Result<ThreadScope> s = rt.registerThread("caller-" + std::to_string(t));
        ASSERT_TRUE(s.isOk()) << s.status().toString();
        scope.emplace(std::move(*s));
      }
      sh.started.fetch_add(1);
      CallerFn fn = viaTrampoline ? trampolineCaller : jitCaller;
      const char* who = viaTrampoline ? "trampoline caller" : "JIT caller";
      uint64_t n = 0;
      while (!sh.stop.load(std::memory_order_relaxed)) {
        uint64_t lo = sh.published.load(std::memory_order_acquire);
        int id = fn();
        uint64_t hi = sh.announced.load(std::memory_order_acquire);
        sh.check(id, lo, hi, who);
        ++n;
      }
      callsPerThread[t] = n;
    });
  }

  // Every caller must be calling (and registered, so it holds up grace periods) before the
  // first update; otherwise a fast run could finish before the callers start.
  for (int i = 0; i < 10000 && sh.started.load() <= kCallerThreads; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));

  // The updater: a new, different, pseudo-random target each time.
  Clock::time_point start = Clock::now(), deadline = start + std::chrono::seconds(120);
  uint32_t rng = 0x9E3779B9u;
  uint64_t done = 0;
  Status failure;
  for (uint64_t v = 1; v <= sc.updates; ++v) {
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
    uint8_t next = static_cast<uint8_t>((sh.history[v - 1] + 1 + rng % (kTargets - 1)) % kTargets);
    sh.history[v] = next;
    sh.announced.store(v, std::memory_order_release);
    Result<const void*> old = rt.update(*key, targets[next]);
    if (!old.isOk()) {
      failure = old.status();
      break;
    }
    if (*old != targets[sh.history[v - 1]]) {
      failure = Status(Error::kInvalidArgument, "update " + std::to_string(v) + " returned the wrong previous target");
      break;
    }
    sh.published.store(v, std::memory_order_release);
    done = v;
    // Now and then a grace period, so the JIT callers' polls take their slow path.
    if (v % 2000 == 0) {
      Status s = rt.synchronize(std::chrono::milliseconds(5000));
      if (!s.isOk()) {
        failure = s;
        break;
      }
    }
    if (Clock::now() > deadline) {
      failure = Status(Error::kTimeout, "only " + std::to_string(v) + " updates within 120 s (machine overloaded?)");
      break;
    }
  }
  double updateSeconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Let the callers see the final target for a moment, then stop them.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  sh.stop = true;
  for (auto& t : callers) t.join();

  ASSERT_EQ(sh.started.load(), kCallerThreads + 1) << "not every caller thread started";
  ASSERT_TRUE(failure.isOk()) << failure.toString();
  EXPECT_EQ(done, sc.updates);
  EXPECT_EQ(sh.violations.load(), 0u) << [&] {
    std::string all;
    for (auto& s : sh.reports) all += s + "\n";
    return all;
  }();
  for (int t = 0; t <= kCallerThreads; ++t) EXPECT_GT(callsPerThread[t], 0u) << "caller " << t << " never ran";
  int seen = 0;
  for (auto& h : sh.hits) seen += h.load() > 0;
  EXPECT_GE(seen, kTargets / 2) << "the callers observed too few distinct targets; the test proves little";

  std::printf("[%s] %llu updates in %.2f s (%.1f us each), %llu calls checked, %d/%d targets seen\n", sc.name,
              static_cast<unsigned long long>(done), updateSeconds, 1e6 * updateSeconds / static_cast<double>(done ? done : 1),
              static_cast<unsigned long long>(sh.calls.load()), seen, kTargets);
}

INSTANTIATE_TEST_SUITE_P(Forms, RetargetConcurrency,
                         // Each toggle update waits a grace period after the previous flip:
                         // with 5 busy threads on 2 cores that is a scheduler timeslice or more
                         // (~10 ms), hence far fewer toggle updates.
                         ::testing::Values(Scenario{"Direct", SiteForm::kDirect, 100000},
                                           Scenario{"Toggle", SiteForm::kToggle, 100},
                                           Scenario{"Breakpoint", SiteForm::kBreakpoint, 10000}),
                         [](const ::testing::TestParamInfo<Scenario>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace patchcall

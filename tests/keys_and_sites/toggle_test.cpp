// Dual-call toggle sites: what they decode to after each update, and the grace-period rule's
// scope (it holds up only the key whose site flipped recently, and a batch waits once).
//
// Layout: [66 90 | EB xx][stall call]?[A: E8 rel32][EB 05][B: E8 rel32]; 66 90 selects A,
// EB xx jumps to B. An update rewrites the inactive call, then flips the toggle.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "disasm.h"
#include "jit_targets.h"
#include "patchcall/jit.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

namespace x86 = asmjit::x86;
using Clock = std::chrono::steady_clock;
using Fn = int (*)();
using test::Decoded;
using test::decodeAt;

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

using test::installTargets;

int idOf(const void* target) {  // reads the imm32 of `mov eax, imm32`
  int v;
  std::memcpy(&v, static_cast<const uint8_t*>(target) + 1, 4);
  return v;
}

struct ToggleFn {
  Fn fn = nullptr;
  const uint8_t* site = nullptr;
  size_t gap = 0;  // 5 when a stall call sits between the toggle and call A
};

// `sub rsp, 8 ; <filler> ; toggle(key) ; add rsp, 8 ; ret` per key; filler bytes vary the
// toggle's offset. `stall` != nullptr emits the test stall call before call A.
std::vector<ToggleFn> installToggleFns(Runtime& rt, const std::vector<Key>& keys, void (*stall)() = nullptr) {
  jit::Assembler a(rt);
  std::vector<size_t> starts;
  for (size_t i = 0; i < keys.size(); ++i) {
    a.align(asmjit::AlignMode::kCode, 16);
    starts.push_back(a.offset());
    a.sub(x86::rsp, 8);
    for (size_t f = 0; f < i % 4; ++f) a.nop();
    Status st = stall != nullptr ? testing::emitToggleWithStall(a, keys[i], stall)
                                 : jit::emitCall(a, keys[i], SiteForm::kToggle);
    EXPECT_TRUE(st.isOk()) << st.toString();
    a.add(x86::rsp, 8);
    a.ret();
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<ToggleFn> out;
  if (!b || a.sites().size() != keys.size()) return out;
  auto* base = static_cast<const uint8_t*>(b->code);
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(ToggleFn{reinterpret_cast<Fn>(base + starts[i]), base + a.sites()[i].offset,
                           stall != nullptr ? size_t{5} : size_t{0}});
  }
  return out;
}

// Decodes a whole toggle site; fails the test (with the decoded text) on any malformation.
struct ToggleState {
  bool selectsB = false;
  uint64_t active = 0, inactive = 0;  // targets of the selected and the other call
};

ToggleState decodeToggle(const ToggleFn& t, const std::string& where) {
  ToggleState s;
  const uint8_t* callA = t.site + 2 + t.gap;
  const uint8_t* callB = callA + 7;
  Decoded toggle = decodeAt(t.site);
  EXPECT_TRUE(toggle.ok && toggle.length == 2) << where << ": toggle decodes as '" << toggle.text << "'";
  EXPECT_EQ(addr(t.site) % 2, 0u) << where << ": toggle at " << static_cast<const void*>(t.site) << " is not 2-aligned";
  if (t.site[0] == 0x66 && t.site[1] == 0x90) {
    s.selectsB = false;
  } else {
    EXPECT_EQ(t.site[0], 0xEB) << where << ": toggle is neither 66 90 nor EB xx: '" << toggle.text << "'";
    EXPECT_TRUE(toggle.isRelative && toggle.target == addr(callB))
        << where << ": toggle '" << toggle.text << "' does not jump to call B at " << static_cast<const void*>(callB);
    s.selectsB = true;
  }
  Decoded a = decodeAt(callA), join = decodeAt(callA + 5), b = decodeAt(callB);
  EXPECT_TRUE(a.isCall && a.opcode == 0xE8 && a.length == 5) << where << ": call A decodes as '" << a.text << "'";
  EXPECT_TRUE(join.isRelative && join.length == 2 && join.target == addr(callB + 5))
      << where << ": the jump over call B decodes as '" << join.text << "'";
  EXPECT_TRUE(b.isCall && b.opcode == 0xE8 && b.length == 5) << where << ": call B decodes as '" << b.text << "'";
  s.active = s.selectsB ? b.target : a.target;
  s.inactive = s.selectsB ? a.target : b.target;
  return s;
}

// ---- a reader held inside a toggle, between the toggle and call A ----------------------------
thread_local bool tStallHere = false;
std::atomic<bool> gStalled{false}, gRelease{false};

bool waitUntil(const std::atomic<bool>& flag, std::chrono::milliseconds bound) {
  auto end = Clock::now() + bound;
  while (!flag.load()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

void stallIfChosen() {
  if (!tStallHere) return;
  tStallHere = false;
  gStalled = true;
  waitUntil(gRelease, std::chrono::seconds(20));
}

Options shortGraceDeadline() {
  Options o;
  o.graceDeadline = std::chrono::milliseconds(5000);
  return o;
}

// ---------------------------------------------------------------------------------------------

TEST(ToggleSite, DecodesToTheCurrentTargetAfterEachSuccessiveUpdate) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 8, 500);
  ASSERT_EQ(targets.size(), 8u);
  Result<Key> key = rt->createKey(targets[0], "toggled");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  std::vector<ToggleFn> fns = installToggleFns(*rt, std::vector<Key>(4, *key));
  ASSERT_EQ(fns.size(), 4u);

  const void* previous = targets[0];
  for (int u = 0; u <= 7; ++u) {
    const void* current = targets[u];
    if (u > 0) {
      Result<const void*> old = rt->update(*key, current);
      ASSERT_TRUE(old.isOk()) << "update " << u << ": " << old.status().toString();
      EXPECT_EQ(*old, previous);
    }
    for (size_t i = 0; i < fns.size(); ++i) {
      std::string where = "update " + std::to_string(u) + ", site " + std::to_string(i) + " at " +
                          hex(addr(fns[i].site));
      ToggleState s = decodeToggle(fns[i], where);
      EXPECT_EQ(s.selectsB, u % 2 == 1) << where << ": each update flips the toggle";
      EXPECT_EQ(s.active, addr(current)) << where << ": the selected call must reach the current target";
      // The other call still holds the previous target: it is what a thread that read the
      // toggle before the flip goes on to call.
      EXPECT_EQ(s.inactive, addr(previous)) << where << ": the unselected call must hold the previous target";
      EXPECT_EQ(fns[i].fn(), idOf(current)) << where;
      Result<SiteInfo> info = rt->site(fns[i].site);
      ASSERT_TRUE(info.isOk()) << info.status().toString();
      EXPECT_EQ(info->form, SiteForm::kToggle);
      EXPECT_EQ(info->target, current) << where;
    }
    previous = current;
  }
}

TEST(ToggleSite, GraceWaitOfOneKeyDoesNotHoldUpOtherKeys) {
  gStalled = false;
  gRelease = false;
  Result<Runtime> rt = Runtime::create(shortGraceDeadline());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 4, 700);
  ASSERT_EQ(targets.size(), 4u);
  Result<Key> k = rt->createKey(targets[0], "K"), l = rt->createKey(targets[0], "L");
  ASSERT_TRUE(k.isOk() && l.isOk());
  std::vector<ToggleFn> kFn = installToggleFns(*rt, {*k}, &stallIfChosen);
  std::vector<ToggleFn> lFn = installToggleFns(*rt, {*l});
  ASSERT_EQ(kFn.size(), 1u);
  ASSERT_EQ(lFn.size(), 1u);

  // A registered reader selects K's call A and stalls there, not quiescent.
  std::atomic<int> readerResult{0};
  std::thread reader([&] {
    Result<ThreadScope> scope = rt->registerThread("stalled-reader");
    if (!scope) return;
    tStallHere = true;
    readerResult = kFn[0].fn();
    safepoint();
  });
  ASSERT_TRUE(waitUntil(gStalled, std::chrono::seconds(5))) << "reader never reached the stall";
  ASSERT_TRUE(rt->update(*k, targets[1]).isOk());  // first flip of K: no wait

  // K's second update needs a grace period after that flip: it blocks on the reader.
  std::atomic<bool> kDone{false};
  Status kStatus;
  std::thread kUpdater([&] {
    Result<const void*> r = rt->update(*k, targets[2]);
    kStatus = r.status();
    kDone = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it start waiting
  EXPECT_FALSE(kDone.load()) << "K's second update did not wait for the stalled reader";

  // Meanwhile L is updated twice (its first update needs no wait) without delay.
  auto start = Clock::now();
  Result<const void*> l1 = rt->update(*l, targets[1]);
  auto lMs = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  bool kStillWaiting = !kDone.load();
  EXPECT_TRUE(l1.isOk()) << l1.status().toString();
  EXPECT_LT(lMs, 1000) << "L's update was held up by K's grace-period wait";
  EXPECT_TRUE(kStillWaiting) << "K's update finished before the reader was released";
  ToggleState ls = decodeToggle(lFn[0], "L after its update");
  EXPECT_EQ(ls.active, addr(targets[1]));
  EXPECT_EQ(lFn[0].fn(), idOf(targets[1]));

  gRelease = true;
  reader.join();
  kUpdater.join();
  EXPECT_TRUE(kStatus.isOk()) << kStatus.toString();
  EXPECT_EQ(readerResult.load(), idOf(targets[0])) << "the stalled reader completes the call it selected";
  EXPECT_GE(rt->stats().toggleGraceWaits, 1u);
  ToggleState ks = decodeToggle(kFn[0], "K after its second update");
  EXPECT_EQ(ks.active, addr(targets[2]));
  EXPECT_EQ(kFn[0].fn(), idOf(targets[2]));
}

TEST(ToggleSite, BatchOfRecentlyFlippedSitesPaysOneGracePeriod) {
  constexpr int kKeys = 20;
  Result<Runtime> rt = Runtime::create(shortGraceDeadline());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 3, 900);
  ASSERT_EQ(targets.size(), 3u);
  std::vector<Key> keys;
  for (int i = 0; i < kKeys; ++i) {
    Result<Key> k = rt->createKey(targets[0]);
    ASSERT_TRUE(k.isOk()) << k.status().toString();
    keys.push_back(*k);
  }
  std::vector<ToggleFn> fns = installToggleFns(*rt, keys);
  ASSERT_EQ(fns.size(), keys.size());

  // An online reader keeps calling every site and passes a safepoint after each round, so
  // a grace period is real (it must wait for the reader) but short.
  std::atomic<bool> stop{false};
  std::atomic<int> badResults{0};
  std::thread reader([&] {
    Result<ThreadScope> scope = rt->registerThread("looping-reader");
    if (!scope) return;
    auto end = Clock::now() + std::chrono::seconds(20);
    while (!stop.load() && Clock::now() < end) {
      for (const ToggleFn& f : fns) {
        int r = f.fn();
        if (r < 900 || r > 902) badResults.fetch_add(1);
      }
      safepoint();
    }
  });

  auto batchTo = [&](const void* target) {
    std::vector<KeyUpdate> batch;
    for (Key k : keys) batch.push_back(KeyUpdate{k, target});
    return rt->updateBatch(batch);
  };
  Status s1 = batchTo(targets[1]);  // first flip of every site: nothing to wait for
  ASSERT_TRUE(s1.isOk()) << s1.toString();
  for (int round = 2; round <= 3; ++round) {
    RuntimeStats before = rt->stats();
    Status s = batchTo(targets[round == 2 ? 2 : 1]);  // every site flipped a moment ago
    RuntimeStats after = rt->stats();
    ASSERT_TRUE(s.isOk()) << s.toString();
    EXPECT_EQ(after.toggleGraceWaits - before.toggleGraceWaits, 1u)
        << "round " << round << ": a batch of " << kKeys << " recently flipped toggles waits exactly once";
    EXPECT_EQ(after.gracePeriods - before.gracePeriods, 1u)
        << "round " << round << ": the batch must pay one grace period, not one per site";
    EXPECT_EQ(after.syncs - before.syncs, 2u) << "round " << round << ": a toggle batch costs two syncs";
  }
  stop = true;
  reader.join();
  EXPECT_EQ(badResults.load(), 0);
  for (size_t i = 0; i < fns.size(); ++i) {
    ToggleState s = decodeToggle(fns[i], "site " + std::to_string(i));
    EXPECT_EQ(s.active, addr(targets[1]));
    EXPECT_EQ(fns[i].fn(), idOf(targets[1]));
  }
}

}  // namespace
}  // namespace patchcall

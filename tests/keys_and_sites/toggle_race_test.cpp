// The dual-call toggle race and its fix (the grace-period rule), executed for real.
//
// A reader R reads the toggle (call A selected) and stalls before call A. Update 1 writes
// call B and flips to B; update 2 then rewrites call A, the call R is about to execute.
// Without the grace-period rule R executes A's rel32 half rewritten (2 new bytes, 2 old);
// with the rule, update 2 waits until R has passed a safepoint, i.e. finished its call.
//
// Invariant 3 for toggles: a plain update returns while R can still enter the old target
// (RaceFixedByGracePeriod: R returns t0 after update 1 returned); a strict update
// (UpdateOptions::strict or KeyOptions::strictUpdates) returns only after R made its call.
//
// The torn destination is made deterministic: the old target t0 lies less than 64 KiB
// after call A, so the old rel32's high half is 0; the new target t2 is placed so that its
// rel32's low half equals the offset of a landing pad. The torn rel32 (new low half, old
// high half) therefore points exactly at the pad, which is neither t0 nor t2 and returns
// kTornId; everything around it is int3 fill, so any other tear would crash on SIGTRAP.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "emulation.h"
#include "disasm.h"
#include "patchcall/jit.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

namespace x86 = asmjit::x86;
using Clock = std::chrono::steady_clock;
using Fn = int (*)();

constexpr int kPlaceholderId = 100, kId0 = 1000, kId1 = 1001, kId2 = 1002, kTornId = 0xBAD;
constexpr int kTornExitCode = 42;

// ---- the stalled reader's rendezvous (test-global: the stall hook is a plain function) ----
thread_local bool tStallHere = false;  // only the chosen thread stalls in the toggle
std::atomic<bool> gStalled{false};     // the reader is inside the stall, toggle already read
std::atomic<bool> gRelease{false};     // let the reader go on to call A
std::atomic<bool> gReaderDone{false};  // the reader's call returned
std::atomic<int> gReaderResult{0};

void resetRendezvous() {
  gStalled = false;
  gRelease = false;
  gReaderDone = false;
  gReaderResult = 0;
}

bool waitFor(const std::atomic<bool>& flag, std::chrono::milliseconds bound) {
  auto end = Clock::now() + bound;
  while (!flag.load()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

// Called by JIT code between the toggle and call A.
void stallBetweenToggleAndCall() {
  if (!tStallHere) return;
  tStallHere = false;
  gStalled = true;
  waitFor(gRelease, std::chrono::seconds(20));
  // As after a preemption (an interrupt return serializes): fetch call A's bytes afresh.
  // This is the executing side of Intel's cross-modifying-code protocol.
  unsigned eax = 0, ebx, ecx = 0, edx;
  asm volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx)::"memory");
}

// Update 2's hook, between the byte stores of call A's rel32: after the 2nd byte, let the
// reader run into the half-written call and wait until it has executed it.
void releaseReaderMidRewrite(int byteIndex) {
  if (byteIndex != 1) return;
  gRelease = true;
  waitFor(gReaderDone, std::chrono::seconds(5));
}

// Restores the process-wide test switches whatever way a test ends.
struct HookGuard {
  ~HookGuard() {
    testing::setSkipToggleGrace(false);
    testing::setBetweenByteWrites(nullptr);
    testing::setSkipStrictGrace(false);
  }
};

// F = [toggle(K) + stall][call A][call B] ; ret, followed (same blob) by t0, t1 and the pad.
struct RaceSetup {
  Runtime rt;
  Key key;
  Fn f = nullptr;
  const uint8_t* toggle = nullptr;
  const uint8_t* callA = nullptr;
  const void *t0 = nullptr, *t1 = nullptr, *t2 = nullptr, *pad = nullptr;
};

int placeholder() { return kPlaceholderId; }

// A short grace deadline: a schedule gone wrong fails in seconds, not after the default 10 s.
Options raceOptions() {
  Options o;
  o.graceDeadline = std::chrono::milliseconds(3000);
  return o;
}

void emitReturner(jit::Assembler& a, int id, size_t* offset) {
  a.align(asmjit::AlignMode::kCode, 16);
  *offset = a.offset();
  a.mov(x86::eax, id);
  a.ret();
}

// Builds the layout described at the top; returns an error string on failure.
std::string buildRaceSetup(RaceSetup& s, KeyOptions keyOptions = {}) {
  Result<Key> key = s.rt.createKey(reinterpret_cast<const void*>(&placeholder), "race", keyOptions);
  if (!key) return key.status().toString();
  s.key = *key;

  jit::Assembler a(s.rt);
  a.sub(x86::rsp, 8);  // keep rsp 16-byte aligned at both calls
  if (Status st = testing::emitToggleWithStall(a, s.key, &stallBetweenToggleAndCall); !st) return st.toString();
  a.add(x86::rsp, 8);
  a.ret();
  size_t off0, off1, offPad;
  emitReturner(a, kId0, &off0);
  emitReturner(a, kId1, &off1);
  emitReturner(a, kTornId, &offPad);
  if (a.sites().size() != 1) return "expected exactly one site";
  size_t toggleOff = a.sites()[0].offset;
  Result<Blob> blob = jit::install(a);
  if (!blob) return blob.status().toString();
  auto* base = static_cast<uint8_t*>(blob->code);
  s.f = reinterpret_cast<Fn>(base);
  s.toggle = base + toggleOff;
  s.callA = s.toggle + 2 + 5;  // toggle, then the 5-byte stall call
  s.t0 = base + off0;
  s.t1 = base + off1;
  s.pad = base + offPad;

  // t2: congruent to the pad modulo 64 KiB, in a 3 x 64 KiB blob of int3 fill.
  const size_t kRegion = 3 * 65536;
  Result<CodeReservation> r = s.rt.reserveCode(kRegion);
  if (!r) return r.status().toString();
  auto rx = reinterpret_cast<uintptr_t>(r->rx);
  uintptr_t t2 = rx + ((reinterpret_cast<uintptr_t>(s.pad) - rx) & 0xFFFF);
  uint8_t* w = r->rw + (t2 - rx);
  w[0] = 0xB8;  // mov eax, imm32 ; ret
  int32_t id2 = kId2;
  std::memcpy(w + 1, &id2, 4);
  w[5] = 0xC3;
  Result<Blob> region = s.rt.commitCode(*r, {});
  if (!region) return region.status().toString();
  s.t2 = reinterpret_cast<const void*>(t2);

  // Preconditions of a deterministic tear.
  auto base5 = reinterpret_cast<intptr_t>(s.callA) + 5;
  auto relOld = static_cast<uint32_t>(reinterpret_cast<intptr_t>(s.t0) - base5);
  auto relNew = static_cast<uint32_t>(reinterpret_cast<intptr_t>(s.t2) - base5);
  uint32_t torn = (relOld & 0xFFFF0000u) | (relNew & 0xFFFFu);
  auto tornAt = base5 + static_cast<int32_t>(torn);
  char buf[256];
  if ((relOld >> 16) == (relNew >> 16) || (relOld & 0xFFFF) == (relNew & 0xFFFF) ||
      tornAt != reinterpret_cast<intptr_t>(s.pad)) {
    std::snprintf(buf, sizeof buf, "layout gives no deterministic tear: relOld=%08x relNew=%08x torn=%08x pad=%p",
                  relOld, relNew, torn, s.pad);
    return buf;
  }
  // Two preparatory updates leave call A -> t0, call B -> t1 and the toggle selecting A (an
  // update to the key's current target would write nothing: each moves it).
  for (const void* t : {s.t1, s.t0}) {
    Result<const void*> u = s.rt.update(s.key, t);
    if (!u) return u.status().toString();
  }
  if (s.toggle[0] != 0x66 || s.toggle[1] != 0x90) return "toggle does not select call A after two updates";
  // Complete the grace period owed to the last flip, so update 1 below does not wait.
  if (Status st = s.rt.synchronize(); !st) return st.toString();
  return "";
}

// A runtime with raceOptions() and the race built in it; "" or what failed.
std::string setUpRace(std::optional<RaceSetup>* out, const KeyOptions& keyOptions = {}) {
  Result<Runtime> rt = Runtime::create(raceOptions());
  if (!rt) return "create: " + rt.status().toString();
  out->emplace(RaceSetup{std::move(*rt), {}});
  return buildRaceSetup(**out, keyOptions);
}

// The reader: registered, stalls inside F between the toggle and call A.
std::thread startReader(Runtime& rt, Fn f, bool dieOnTornCall, const void* pad) {
  return std::thread([&rt, f, dieOnTornCall, pad] {
    Result<ThreadScope> scope = rt.registerThread("race-reader");
    if (!scope) {
      std::fprintf(stderr, "registerThread: %s\n", scope.status().toString().c_str());
      return;
    }
    tStallHere = true;
    int r = f();
    gReaderResult = r;
    if (dieOnTornCall && r != kId0 && r != kId1 && r != kId2) {
      std::fprintf(stderr, "torn call: F returned %d (0x%x); the torn rel32 landed on the pad at %p\n", r, r, pad);
      std::fflush(stderr);
      _exit(kTornExitCode);
    }
    safepoint();  // the quiescent state update 2 waits for under the grace-period rule
    gReaderDone = true;
  });
}

// The death-test child: grace rule off, tear the call. Dies (exit 42) on a torn call.
void tearTheCallWithoutGracePeriod() {
  HookGuard guard;
  resetRendezvous();
  Result<Runtime> rt = Runtime::create(raceOptions());
  if (!rt) {
    std::fprintf(stderr, "create: %s\n", rt.status().toString().c_str());
    return;
  }
  RaceSetup s{std::move(*rt), {}};
  if (std::string err = buildRaceSetup(s); !err.empty()) {
    std::fprintf(stderr, "setup: %s\n", err.c_str());
    return;
  }
  testing::setSkipToggleGrace(true);
  std::thread reader = startReader(s.rt, s.f, /*dieOnTornCall=*/true, s.pad);
  if (!waitFor(gStalled, std::chrono::seconds(5))) {
    std::fprintf(stderr, "reader never reached the stall\n");
    gRelease = true;
    reader.join();
    return;
  }
  Result<const void*> u1 = s.rt.update(s.key, s.t1);  // writes B, flips to B
  testing::setBetweenByteWrites(&releaseReaderMidRewrite);
  Result<const void*> u2 = s.rt.update(s.key, s.t2);  // rewrites A under the reader
  gRelease = true;
  reader.join();
  std::fprintf(stderr, "no torn call: reader returned %d; update1=%s update2=%s\n", gReaderResult.load(),
               u1.status().toString().c_str(), u2.status().toString().c_str());
}

TEST(ToggleRaceDeathTest, RaceWithoutGracePeriodTearsCall) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(tearTheCallWithoutGracePeriod(), ::testing::ExitedWithCode(kTornExitCode),
              "torn call: F returned 2989 \\(0xbad\\)");
}

TEST(ToggleRace, RaceFixedByGracePeriod) {
  HookGuard guard;
  resetRendezvous();
  std::optional<RaceSetup> race;
  std::string err = setUpRace(&race);
  ASSERT_TRUE(err.empty()) << err;
  RaceSetup& s = *race;
  uint64_t waitsBefore = s.rt.stats().toggleGraceWaits;

  std::thread reader = startReader(s.rt, s.f, /*dieOnTornCall=*/false, s.pad);
  ASSERT_TRUE(waitFor(gStalled, std::chrono::seconds(5))) << "reader never reached the stall";
  Result<const void*> u1 = s.rt.update(s.key, s.t1);
  EXPECT_TRUE(u1.isOk()) << u1.status().toString();
  // The same schedule as the death test (the hook finds the reader long done), plus a
  // releaser: update 2 must wait for the reader, which only the releaser can unblock.
  testing::setBetweenByteWrites(&releaseReaderMidRewrite);
  std::thread releaser([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gRelease = true;
  });
  auto start = Clock::now();
  Result<const void*> u2 = s.rt.update(s.key, s.t2);
  auto waitedMs = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  gRelease = true;
  releaser.join();
  reader.join();
  testing::setBetweenByteWrites(nullptr);

  ASSERT_TRUE(u2.isOk()) << u2.status().toString();
  EXPECT_TRUE(gReaderDone.load());
  EXPECT_EQ(gReaderResult.load(), kId0)
      << "the stalled reader must complete the call it selected (t0 = " << s.t0 << "); t1 = " << s.t1
      << ", t2 = " << s.t2 << ", torn pad = " << s.pad;
  EXPECT_GE(waitedMs, 40) << "update 2 did not wait for the stalled reader's grace period";
  EXPECT_GT(s.rt.stats().toggleGraceWaits, waitsBefore);
  // Update 2 completed afterwards: call A -> t2, selected.
  EXPECT_EQ(s.toggle[0], 0x66) << "toggle should select call A again";
  test::Decoded a = test::decodeAt(s.callA);
  EXPECT_TRUE(a.isCall && a.opcode == 0xE8) << a.text;
  EXPECT_EQ(a.target, reinterpret_cast<uint64_t>(s.t2)) << "call A decodes as '" << a.text << "'";
  EXPECT_EQ(s.f(), kId2);
}

// ---- strict updates: no thread enters the old target after update() returned ---------------

// The reader stalls between the toggle (call A = t0 selected) and call A; a releaser lets it
// go after 50 ms. Returns the reader's result as seen the moment the update returned (0: it
// had not made its call yet) and the update's status.
struct StrictRun {
  Status status;
  int resultAtReturn = 0;
  long waitedMs = 0;
};
StrictRun runStrictUpdate(RaceSetup& s, const UpdateOptions& how, std::chrono::milliseconds releaseAfter) {
  StrictRun run;
  std::thread reader = startReader(s.rt, s.f, /*dieOnTornCall=*/false, s.pad);
  if (!waitFor(gStalled, std::chrono::seconds(5))) {
    run.status = Status(Error::kTimeout, "reader never reached the stall");
    gRelease = true;
    reader.join();
    return run;
  }
  std::thread releaser([releaseAfter] {
    std::this_thread::sleep_for(releaseAfter);
    gRelease = true;
  });
  auto start = Clock::now();
  Result<const void*> u = s.rt.update(s.key, s.t1, how);
  run.resultAtReturn = gReaderResult.load();
  run.waitedMs = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
  run.status = u.status();
  releaser.join();
  gRelease = true;
  reader.join();
  return run;
}

TEST(ToggleRace, StrictUpdateReturnsOnlyAfterTheStalledReaderMadeItsCall) {
  for (bool perKey : {false, true}) {
    SCOPED_TRACE(perKey ? "KeyOptions::strictUpdates" : "UpdateOptions::strict");
    HookGuard guard;
    resetRendezvous();
    KeyOptions keyOptions;
    keyOptions.strictUpdates = perKey;
    std::optional<RaceSetup> race;
    std::string err = setUpRace(&race, keyOptions);
    ASSERT_TRUE(err.empty()) << err;
    RaceSetup& s = *race;
    UpdateOptions how;
    how.strict = !perKey;
    StrictRun run = runStrictUpdate(s, how, std::chrono::milliseconds(50));
    ASSERT_TRUE(run.status.isOk()) << run.status.toString();
    EXPECT_EQ(run.resultAtReturn, kId0) << "a strict update returned while the reader could still enter the old "
                                           "target t0 (it had not made its call yet)";
    EXPECT_GE(run.waitedMs, 40) << "the strict update did not wait for the stalled reader";
    EXPECT_EQ(gReaderResult.load(), kId0) << "the reader completes the call it selected";
    EXPECT_EQ(s.f(), kId1);
  }
}

TEST(ToggleRace, WithoutItsGracePeriodAStrictUpdateLeavesTheWindowOpen) {
  // The same run with the strict wait skipped: the update returns with the reader still
  // stalled before call A, which then enters t0 -- the window the option closes.
  HookGuard guard;
  resetRendezvous();
  std::optional<RaceSetup> race;
  std::string err = setUpRace(&race);
  ASSERT_TRUE(err.empty()) << err;
  RaceSetup& s = *race;
  testing::setSkipStrictGrace(true);
  UpdateOptions how;
  how.strict = true;
  StrictRun run = runStrictUpdate(s, how, std::chrono::milliseconds(50));
  ASSERT_TRUE(run.status.isOk()) << run.status.toString();
  EXPECT_EQ(run.resultAtReturn, 0) << "the reader was still stalled when the update returned";
  EXPECT_EQ(gReaderResult.load(), kId0) << "and entered the old target afterwards";
}

TEST(ToggleRace, StrictUpdateTimeoutSaysTheUpdateTookEffect) {
  HookGuard guard;
  resetRendezvous();
  std::optional<RaceSetup> race;
  std::string err = setUpRace(&race);
  ASSERT_TRUE(err.empty()) << err;
  RaceSetup& s = *race;
  UpdateOptions how;
  how.strict = true;
  how.deadline = std::chrono::milliseconds(100);
  StrictRun run = runStrictUpdate(s, how, std::chrono::milliseconds(400));
  EXPECT_EQ(run.status.code(), Error::kTimeout) << run.status.toString();
  EXPECT_NE(run.status.message().find("has taken effect"), std::string::npos) << run.status.toString();
  EXPECT_LT(run.waitedMs, 350) << "the deadline passed in bounds the strict wait";
  EXPECT_EQ(run.resultAtReturn, 0);
  EXPECT_EQ(*s.rt.target(s.key), s.t1) << "the key names the new target after a strict timeout";
  EXPECT_EQ(s.toggle[0], 0xEB) << "the toggle selects call B (t1)";
  EXPECT_EQ(s.f(), kId1);
  EXPECT_TRUE(s.rt.synchronize().isOk()) << "a later grace period completes what the strict wait began";
}

TEST(ToggleRace, StrictUpdateOfDirectSitesCostsNoGracePeriod) {
  Result<Runtime> rt = Runtime::create(raceOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&placeholder), "direct", KeyOptions{true});
  ASSERT_TRUE(key.isOk());
  Result<ThreadScope> scope = rt->registerThread("online, never at a safepoint while updating");
  ASSERT_TRUE(scope.isOk());
  uint64_t before = rt->stats().gracePeriods;
  UpdateOptions how;
  how.strict = true;
  EXPECT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&placeholder), how).isOk());
  EXPECT_EQ(rt->stats().gracePeriods, before) << "without toggle sites a strict update holds at once";
}

}  // namespace
}  // namespace patchcall

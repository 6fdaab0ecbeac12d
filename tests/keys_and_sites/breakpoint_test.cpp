// The breakpoint protocol (Linux text_poke_bp): int3 on the first byte, sync; the 4 tail
// bytes, sync; the E8 back, sync. Sites at any alignment (and foreign ones) are retargeted
// with it; a SIGTRAP handler emulates the call for a thread that hits the int3 meanwhile and
// chains traps it does not own to the handler installed before it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emulation.h"
#include "disasm.h"
#include "jit_targets.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {

namespace x86 = asmjit::x86;
using Clock = std::chrono::steady_clock;
using Fn = int (*)();
using test::Decoded;
using test::decodeAt;

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

using test::installTargets;

using test::idOf;

struct SiteFn {
  Fn fn = nullptr;
  const uint8_t* site = nullptr;
};

// One function per key: `sub rsp, 8 ; nops ; call(key, kBreakpoint) ; add rsp, 8 ; ret`,
// the nops chosen so the rel32 sits at offset 1, 2, 3, 0, 1, ... modulo 4.
std::vector<SiteFn> installBreakpointFns(Runtime& rt, const std::vector<Key>& keys) {
  jit::Assembler a(rt);
  std::vector<size_t> starts;
  for (size_t i = 0; i < keys.size(); ++i) {
    a.align(asmjit::AlignMode::kCode, 16);
    starts.push_back(a.offset());
    a.sub(x86::rsp, 8);
    size_t wantRel32Mod4 = (i + 1) % 4;
    while ((a.offset() + 1) % 4 != wantRel32Mod4) a.nop();
    Status st = jit::emitCall(a, keys[i], SiteForm::kBreakpoint);
    EXPECT_TRUE(st.isOk()) << st.toString();
    a.add(x86::rsp, 8);
    a.ret();
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<SiteFn> out;
  if (!b || a.sites().size() != keys.size()) return out;
  auto* base = static_cast<const uint8_t*>(b->code);
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(SiteFn{reinterpret_cast<Fn>(base + starts[i]), base + a.sites()[i].offset});
  }
  return out;
}

void expectCallTo(const void* call, const void* target, const std::string& where) {
  Decoded d = decodeAt(call);
  EXPECT_TRUE(d.ok && d.isCall && d.opcode == 0xE8 && d.length == 5) << where << ": decodes as '" << d.text << "'";
  EXPECT_EQ(d.target, addr(target)) << where << ": '" << d.text << "' at " << call << ", expected target " << target;
}

// ---- retargeting and cost ---------------------------------------------------------------------

TEST(BreakpointSite, UnalignedSitesRetargetAndDecodeAfterEachUpdate) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 6, 300);
  ASSERT_EQ(targets.size(), 6u);
  Result<Key> key = rt->createKey(targets[0], "bp");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  std::vector<SiteFn> fns = installBreakpointFns(*rt, std::vector<Key>(12, *key));
  ASSERT_EQ(fns.size(), 12u);
  int unaligned = 0;
  for (const SiteFn& f : fns) unaligned += (addr(f.site) + 1) % 4 != 0;
  EXPECT_EQ(unaligned, 9) << "three of every four sites must have an unaligned rel32";

  for (int u = 0; u < 6; ++u) {
    if (u > 0) {
      Result<const void*> old = rt->update(*key, targets[u]);
      ASSERT_TRUE(old.isOk()) << "update " << u << ": " << old.status().toString();
      EXPECT_EQ(*old, targets[u - 1]);
    }
    for (size_t i = 0; i < fns.size(); ++i) {
      std::string where = "update " + std::to_string(u) + ", site " + std::to_string(i) + " (rel32 % 4 = " +
                          std::to_string((addr(fns[i].site) + 1) % 4) + ")";
      expectCallTo(fns[i].site, targets[u], where);
      EXPECT_EQ(fns[i].fn(), idOf(targets[u])) << where;
      Result<SiteInfo> info = rt->site(fns[i].site);
      ASSERT_TRUE(info.isOk()) << info.status().toString();
      EXPECT_EQ(info->form, SiteForm::kBreakpoint) << where;
      EXPECT_EQ(info->target, targets[u]) << where;
    }
  }
}

TEST(BreakpointSite, BatchCostsThreeSyncsNotOnePerSite) {
  constexpr int kKeys = 50, kSitesPerKey = 20;
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 3, 400);
  ASSERT_EQ(targets.size(), 3u);
  std::vector<Key> keys, siteKeys;
  for (int k = 0; k < kKeys; ++k) {
    Result<Key> key = rt->createKey(targets[0]);
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    keys.push_back(*key);
    for (int s = 0; s < kSitesPerKey; ++s) siteKeys.push_back(*key);
  }
  std::vector<SiteFn> fns = installBreakpointFns(*rt, siteKeys);
  ASSERT_EQ(fns.size(), siteKeys.size());

  std::vector<KeyUpdate> batch;
  for (Key k : keys) batch.push_back(KeyUpdate{k, targets[1]});
  RuntimeStats before = rt->stats();
  Status s = rt->updateBatch(batch);
  RuntimeStats after = rt->stats();
  ASSERT_TRUE(s.isOk()) << s.toString();
  EXPECT_EQ(after.syncs - before.syncs, 3u) << "a batch of " << fns.size() << " breakpoint sites over " << kKeys
                                            << " keys: one sync per protocol phase";
  EXPECT_EQ(after.siteWrites - before.siteWrites, fns.size() + kKeys) << "every site and trampoline written once";
  EXPECT_EQ(after.updates - before.updates, static_cast<uint64_t>(kKeys));

  before = rt->stats();
  Result<const void*> one = rt->update(keys[7], targets[2]);
  after = rt->stats();
  ASSERT_TRUE(one.isOk()) << one.status().toString();
  EXPECT_EQ(after.syncs - before.syncs, 3u) << "one key with " << kSitesPerKey << " breakpoint sites";

  for (size_t i = 0; i < fns.size(); ++i) {
    const void* want = siteKeys[i] == keys[7] ? targets[2] : targets[1];
    expectCallTo(fns[i].site, want, "site " + std::to_string(i));
    ASSERT_EQ(fns[i].fn(), idOf(want)) << "site " << i;
  }
}

// ---- the SIGTRAP handler emulates the call ----------------------------------------------------

// Deterministic: a batch updates a toggle key and a breakpoint key. The patch observer runs
// when the toggle flips (phase 2), while the breakpoint site still holds its int3; calling
// through the site there must trap and be sent to the new target.
TEST(BreakpointSite, CallHittingTheInt3IsEmulatedToTheNewTarget) {
  struct Probe {
    std::atomic<bool> armed{false};
    Fn bpFn = nullptr;
    const uint8_t* bpSite = nullptr;
    int result = 0;
    uint8_t firstByte = 0;
    uint64_t trapsBefore = 0;
    int calls = 0;
  };
  auto probe = std::make_shared<Probe>();
  Options o;
  o.patchObserver = [probe](const PatchEvent& e) {
    if (!probe->armed.load() || e.form != SiteForm::kToggle) return;
    probe->firstByte = *probe->bpSite;
    probe->result = probe->bpFn();  // runs through the int3 of a site mid-protocol
    ++probe->calls;
  };
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, 2, 600);
  ASSERT_EQ(targets.size(), 2u);
  Result<Key> bpKey = rt->createKey(targets[0], "bp"), toggleKey = rt->createKey(targets[0], "toggle");
  ASSERT_TRUE(bpKey.isOk() && toggleKey.isOk());
  std::vector<SiteFn> bp = installBreakpointFns(*rt, {*bpKey});
  ASSERT_EQ(bp.size(), 1u);
  jit::Assembler a(*rt);
  ASSERT_TRUE(jit::emitCall(a, *toggleKey, SiteForm::kToggle).isOk());
  a.ret();
  ASSERT_TRUE(jit::install(a).isOk());

  probe->bpFn = bp[0].fn;
  probe->bpSite = bp[0].site;
  uint64_t trapsBefore = rt->stats().trapsEmulated;
  probe->armed = true;
  KeyUpdate batch[2] = {{*toggleKey, targets[1]}, {*bpKey, targets[1]}};
  Status s = rt->updateBatch(batch);
  probe->armed = false;
  ASSERT_TRUE(s.isOk()) << s.toString();
  ASSERT_EQ(probe->calls, 1) << "the observer should see exactly one toggle flip";
  EXPECT_EQ(probe->firstByte, 0xCC) << "the breakpoint site should hold int3 while the toggle flips";
  EXPECT_EQ(probe->result, idOf(targets[1])) << "the trapped call must be emulated to the new target";
  EXPECT_EQ(rt->stats().trapsEmulated - trapsBefore, 1u);
  expectCallTo(bp[0].site, targets[1], "after the batch");
}

// Statistical: callers run through a breakpoint site in a tight loop while it is updated
// over and over; some calls hit the int3, and every call returns a target that was current
// during that call (versions: begin <= v <= done, read around the call).
TEST(BreakpointSite, ConcurrentCallersHitTheTrapAndAlwaysGetACurrentTarget) {
  constexpr int kTargets = 16, kBase = 800;
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = installTargets(*rt, kTargets, kBase);
  ASSERT_EQ(targets.size(), static_cast<size_t>(kTargets));
  Result<Key> key = rt->createKey(targets[0], "hot");
  ASSERT_TRUE(key.isOk());
  std::vector<SiteFn> fns = installBreakpointFns(*rt, {*key});  // rel32 % 4 == 1
  ASSERT_EQ(fns.size(), 1u);

  std::atomic<uint64_t> begun{0}, done{0};  // version v targets targets[v % kTargets]
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, violations{0};
  std::string firstViolation;
  std::mutex violationMutex;
  auto caller = [&] {
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t lo = done.load(std::memory_order_acquire);
      int r = fns[0].fn();
      uint64_t hi = begun.load(std::memory_order_acquire);
      bool ok = false;
      for (uint64_t v = lo; v <= hi && !ok; ++v) ok = r == kBase + static_cast<int>(v % kTargets);
      if (!ok) {
        violations.fetch_add(1);
        std::lock_guard<std::mutex> lock(violationMutex);
        if (firstViolation.empty()) {
          firstViolation = "returned " + std::to_string(r) + " with versions [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "]";
        }
      }
      ++n;
    }
    calls.fetch_add(n);
  };
  std::thread c1(caller), c2(caller);

  uint64_t trapsBefore = rt->stats().trapsEmulated;
  auto end = Clock::now() + std::chrono::seconds(10);
  uint64_t v = 0;
  Status failed;
  while (Clock::now() < end && (v < 2000 || rt->stats().trapsEmulated == trapsBefore)) {
    ++v;
    begun.store(v, std::memory_order_release);
    Result<const void*> r = rt->update(*key, targets[v % kTargets]);
    if (!r) {
      failed = r.status();
      break;
    }
    done.store(v, std::memory_order_release);
  }
  stop = true;
  c1.join();
  c2.join();
  uint64_t traps = rt->stats().trapsEmulated - trapsBefore;
  std::printf("[ info ] %llu updates, %llu calls, %llu calls emulated by the SIGTRAP handler\n",
              static_cast<unsigned long long>(v), static_cast<unsigned long long>(calls.load()),
              static_cast<unsigned long long>(traps));
  ASSERT_TRUE(failed.isOk()) << failed.toString();
  EXPECT_EQ(violations.load(), 0u) << "first: " << firstViolation;
  EXPECT_GT(traps, 0u) << "no caller hit an int3 in " << v << " updates within 10 s";
  EXPECT_GT(calls.load(), 0u);
}

// ---- chaining to the SIGTRAP handler installed before patchcall's ---------------------------

std::atomic<int> gForeignTraps{0};
void countingSigtrapHandler(int, siginfo_t*, void*) { gForeignTraps.fetch_add(1); }

// Runs in a fresh death-test child (threadsafe style re-executes the binary), so this
// handler is installed before the process's first Runtime::create installs patchcall's.
void sigtrapsNotOwnedReachThePreviousHandler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = countingSigtrapHandler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTRAP, &sa, nullptr) != 0) _exit(10);
  Result<Runtime> rt = Runtime::create();
  if (!rt) {
    std::fprintf(stderr, "create: %s\n", rt.status().toString().c_str());
    _exit(11);
  }
  struct sigaction now;
  sigaction(SIGTRAP, nullptr, &now);
  if (now.sa_sigaction == countingSigtrapHandler) {
    std::fprintf(stderr, "patchcall did not install its SIGTRAP handler\n");
    _exit(12);
  }
  raise(SIGTRAP);  // a SIGTRAP that is not an int3 at all
  // An int3 in unrelated JIT code: not a site being patched, so not patchcall's.
  jit::Assembler a(*rt);
  a.int3();
  a.mov(x86::eax, 7);
  a.ret();
  Result<Blob> blob = jit::install(a);
  if (!blob) _exit(13);
  int r = reinterpret_cast<Fn>(blob->code)();  // the handler returns: resume after the int3
  std::fprintf(stderr, "previous handler saw %d SIGTRAPs; code after the int3 returned %d\n", gForeignTraps.load(), r);
  std::fflush(stderr);
  _exit(gForeignTraps.load() == 2 && r == 7 ? 0 : 1);
}

void unownedSigtrapWithNoPreviousHandler() {
  signal(SIGTRAP, SIG_DFL);
  Result<Runtime> rt = Runtime::create();
  if (!rt) _exit(11);
  jit::Assembler a(*rt);
  a.int3();
  a.ret();
  Result<Blob> blob = jit::install(a);
  if (!blob) _exit(13);
  reinterpret_cast<void (*)()>(blob->code)();
  std::fprintf(stderr, "survived an unowned int3\n");
  _exit(0);
}

TEST(BreakpointTrapChainDeathTest, SigtrapsNotOwnedReachThePreviouslyInstalledHandler) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(sigtrapsNotOwnedReachThePreviousHandler(), ::testing::ExitedWithCode(0),
              "previous handler saw 2 SIGTRAPs; code after the int3 returned 7");
}

TEST(BreakpointTrapChainDeathTest, UnownedInt3WithoutPreviousHandlerKillsLikeSIGTRAP) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(unownedSigtrapWithNoPreviousHandler(), ::testing::KilledBySignal(SIGTRAP), "");
}

}  // namespace
}  // namespace patchcall

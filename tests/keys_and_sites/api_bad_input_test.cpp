// Bad inputs of the public API not covered by update_bad_input_test.cpp and the area tests:
// README.md "Bad-input table" lists every (function, bad input, Error) row and the test that checks it.
// Each failure must be the exact error, carry a message, and leave the runtime usable.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "emulation.h"
#include "isa.h"
#include "jit_targets.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "error_checks.h"
#include "patchcall/static_call.h"
#include "quiescence_util.h"

namespace patchcall {
namespace {

using checks::callInt;
using checks::installCaller;
using checks::installReturner;
using checks::quietManualOptions;
using namespace std::chrono_literals;

using checks::cxxOne;
using checks::cxxTwo;
using checks::fnOne;
using checks::fnTwo;

Runtime makeRuntime(Options o = quietManualOptions()) {
  Result<Runtime> r = Runtime::create(std::move(o));
  if (!r) {
    ADD_FAILURE() << "Runtime::create: " << r.status().toString();
    std::abort();
  }
  return std::move(*r);
}

// ---- Runtime::create ------------------------------------------------------------------------

TEST(HardeningBadInput, CreateRejectsZeroLimitsAndArenaSizesOutsideTheSupportedRange) {
  for (size_t size : {size_t{0}, size_t{65535}, size_t{2} << 30, std::numeric_limits<size_t>::max()}) {
    Options o = quietManualOptions();
    o.arenaSize = size;
    EXPECT_ERROR(Runtime::create(o), Error::kInvalidArgument);
  }
  Options threads = quietManualOptions();
  threads.maxThreads = 0;
  EXPECT_ERROR(Runtime::create(threads), Error::kInvalidArgument);
  Options keys = quietManualOptions();
  keys.maxKeys = 0;
  EXPECT_ERROR(Runtime::create(keys), Error::kInvalidArgument);
  Options align = quietManualOptions();
  align.targetAlignment = 0;
  EXPECT_ERROR(Runtime::create(align), Error::kInvalidArgument);
  // The smallest supported arena works.
  Options small = quietManualOptions();
  small.arenaSize = size_t{64} << 10;
  Result<Runtime> ok = Runtime::create(small);
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(ok->arenaInfo().size, size_t{64} << 10);
}

TEST(HardeningBadInput, OccupiedArenaHintFallsBackToAPlacementNearTheText) {
  void* taken = mmap(nullptr, size_t{4} << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(taken, MAP_FAILED);
  Options o = quietManualOptions();
  o.arenaSize = size_t{1} << 20;
  o.arenaHint = taken;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  EXPECT_NE(rt->arenaInfo().rxBase, taken) << "the arena was mapped over an existing mapping";
  EXPECT_TRUE(rt->arenaInfo().nearText) << "fallback placement is not near the text: distance "
                                        << rt->arenaInfo().distanceFromText;
  munmap(taken, size_t{4} << 20);
}

// seccomp makes membarrier fail with EPERM in a fresh child process.
int denyMembarrier() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(offsetof(struct seccomp_data, nr))),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

void refusedMembarrierChild() {
  if (denyMembarrier() != 0) {
    std::fprintf(stderr, "seccomp unavailable (errno %d): nothing to check\n", errno);
    _exit(0);
  }
  Options strict = quietManualOptions();
  strict.arenaSize = size_t{1} << 20;
  strict.sync = SyncMethod::kMembarrier;
  Result<Runtime> refused = Runtime::create(strict);
  if (refused.code() != Error::kSyncUnsupported) {
    std::fprintf(stderr, "kMembarrier without membarrier: %s\n", refused.status().toString().c_str());
    _exit(1);
  }
  Options fallback = strict;
  fallback.sync = SyncMethod::kAuto;
  int diagnostics = 0;
  fallback.diagnosticSink = [&](const std::string& m) { diagnostics += m.find("membarrier") != std::string::npos; };
  Result<Runtime> rt = Runtime::create(fallback);
  if (rt.code() == Error::kSyncUnsupported && rt.status().message().find("INVLPGB") != std::string::npos) {
    std::fprintf(stderr, "the mprotect fallback is refused on this kernel and CPU (INVLPGB): %s\n", rt.status().toString().c_str());
    _exit(0);
  }
  if (!rt || rt->arenaInfo().sync != SyncMethod::kMprotectIpi || diagnostics != 1) _exit(2);
  Result<Key> key = rt->createKey(fnOne());
  Result<Blob> caller = key ? installCaller(*rt, *key) : Result<Blob>(Error::kUnknownKey, "no key");
  if (!caller || callInt(caller->code) != 1) _exit(3);
  if (!rt->update(*key, fnTwo()) || callInt(caller->code) != 2) _exit(4);
  std::fprintf(stderr, "refused membarrier: kSyncUnsupported, then the mprotect fallback patches\n");
  _exit(0);
}

TEST(HardeningBadInputDeathTest, RefusedMembarrierIsSyncUnsupportedOrTheFallback) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(refusedMembarrierChild(), ::testing::ExitedWithCode(0), "");
}

// ---- keys --------------------------------------------------------------------------------

TEST(HardeningBadInput, TargetCellOfAnUnknownKey) {
  Runtime rt = makeRuntime();
  Result<Key> k = rt.createKey(fnOne());
  ASSERT_TRUE(k.isOk());
  ASSERT_TRUE(rt.destroyKey(*k).isOk());
  for (Key bad : {Key{}, Key{424242}, *k}) EXPECT_ERROR(rt.targetCell(bad), Error::kUnknownKey);
}

TEST(HardeningBadInput, EmptyBatchIsANoOp) {
  Runtime rt = makeRuntime();
  RuntimeStats before = rt.stats();
  EXPECT_TRUE(rt.updateBatch({}).isOk());
  RuntimeStats after = rt.stats();
  EXPECT_EQ(after.updates, before.updates);
  EXPECT_EQ(after.syncs, before.syncs) << "an empty batch paid a cross-core sync";
}

TEST(HardeningBadInput, StaticCallBadArguments) {
  using Sc = StaticCall<int()>;
  Runtime rt = makeRuntime();
  EXPECT_ERROR(Sc::create(rt, nullptr), Error::kNullTarget);
  Result<Sc> sc = Sc::create(rt, &cxxOne, "typed");
  ASSERT_TRUE(sc.isOk()) << sc.status().toString();
  EXPECT_ERROR(sc->update(nullptr), Error::kNullTarget);
  EXPECT_EQ((*sc)(), 1) << "a refused update changed the target";
  EXPECT_EQ(sc->target(), &cxxOne);
  ASSERT_TRUE(rt.destroyKey(sc->key()).isOk());
  EXPECT_EQ(sc->target(), nullptr) << "target() of a destroyed key";
  EXPECT_ERROR(sc->update(&cxxTwo), Error::kUnknownKey);
  EXPECT_EQ((*sc)(), 1) << "the cell of a destroyed key must keep calling its last target";
}

// ---- reserving and committing code ------------------------------------------------------

TEST(HardeningBadInput, ReserveCodeOfZeroBytesIsInvalid) {
  Runtime rt = makeRuntime();
  EXPECT_ERROR(rt.reserveCode(0), Error::kInvalidArgument);
  EXPECT_ERROR(rt.installCode({}, {}), Error::kInvalidArgument);
}

// The size used to round up (wrapping) to 0 and the reservation "succeeded".
TEST(HardeningBadInput, ReserveCodeNearSizeMaxIsRefused) {
  Runtime rt = makeRuntime();
  size_t usedBefore = rt.arenaInfo().used;
  for (size_t size : {std::numeric_limits<size_t>::max(), std::numeric_limits<size_t>::max() - 62,
                      std::numeric_limits<size_t>::max() / 2}) {
    Result<CodeReservation> r = rt.reserveCode(size);
    EXPECT_FALSE(r.isOk()) << "reserveCode(" << size << ") succeeded: rx " << static_cast<void*>(r ? r->rx : nullptr);
    if (r) rt.abandonCode(*r);
    EXPECT_TRUE(r.code() == Error::kArenaExhausted || r.code() == Error::kInvalidArgument) << r.status().toString();
  }
  EXPECT_EQ(rt.arenaInfo().used, usedBefore);
}

TEST(HardeningBadInput, CommitCodeRejectsReservationsNotInTheArena) {
  Runtime rt = makeRuntime();
  auto* outside = static_cast<uint8_t*>(const_cast<void*>(rt.arenaInfo().rxBase)) + rt.arenaInfo().size + 4096;
  for (CodeReservation bad : {CodeReservation{nullptr, nullptr, 64}, CodeReservation{outside, outside, 64}}) {
    EXPECT_ERROR(rt.commitCode(bad, {}), Error::kInvalidArgument);
  }
  Result<CodeReservation> r = rt.reserveCode(64);
  ASSERT_TRUE(r.isOk());
  EXPECT_ERROR(rt.commitCode(CodeReservation{r->rx, r->rw, 0}, {}), Error::kInvalidArgument);
  rt.abandonCode(*r);
  rt.abandonCode(CodeReservation{});  // a null reservation is ignored
  EXPECT_EQ(rt.stats().blobs, 0u);
}

// A site list with one defect is refused as a whole; nothing is registered.
TEST(HardeningBadInput, CommitCodeRejectsMalformedSiteLists) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();  // x86 bytes with toggle and breakpoint sites
  Runtime rt = makeRuntime();
  Result<Key> key = rt.createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  // 0: nop x3 | 3: E8 (rel32 at 4, aligned) | 8: nop x2 | 10: toggle (14 bytes) | 24: E8 at 24 | 29: ret
  std::vector<uint8_t> code = {0x90, 0x90, 0x90, 0xE8, 0, 0, 0, 0, 0x90, 0x90, 0x66, 0x90, 0xE8, 0, 0, 0, 0,
                               0xEB, 0x05, 0xE8, 0, 0, 0, 0, 0xE8, 0, 0, 0, 0, 0xC3};
  struct Case {
    const char* what;
    std::vector<SiteSpec> specs;
    Error expected;
  };
  Key k = *key;
  const std::vector<Case> cases = {
      {"offset past the end", {{40, k, SiteForm::kBreakpoint}}, Error::kInvalidArgument},
      {"call cut by the end", {{27, k, SiteForm::kBreakpoint}}, Error::kInvalidArgument},
      {"overlapping sites", {{3, k, SiteForm::kDirect}, {5, k, SiteForm::kBreakpoint}}, Error::kInvalidArgument},
      {"same site twice", {{3, k, SiteForm::kDirect}, {3, k, SiteForm::kDirect}}, Error::kInvalidArgument},
      {"not an E8 call", {{0, k, SiteForm::kBreakpoint}}, Error::kInvalidArgument},
      {"Direct with an unaligned rel32", {{24, k, SiteForm::kDirect}}, Error::kInvalidArgument},
      {"toggle that is a call", {{24, k, SiteForm::kToggle}}, Error::kInvalidArgument},
      {"Direct that is a toggle", {{10, k, SiteForm::kDirect}}, Error::kInvalidArgument},
      {"toggle at an odd address", {{11, k, SiteForm::kToggle}}, Error::kInvalidArgument},
      {"kAuto is not resolved", {{3, k, SiteForm::kAuto}}, Error::kInvalidArgument},
      {"form out of the enum", {{3, k, static_cast<SiteForm>(9)}}, Error::kInvalidArgument},
      {"unknown key", {{3, Key{777}, SiteForm::kDirect}}, Error::kUnknownKey},
      {"one bad among good", {{3, k, SiteForm::kDirect}, {10, k, SiteForm::kToggle}, {24, Key{}, SiteForm::kBreakpoint}},
       Error::kUnknownKey},
  };
  size_t usedBefore = rt.arenaInfo().used;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Result<Blob> b = rt.installCode(code, c.specs);
    EXPECT_ERROR(b, c.expected);
    EXPECT_EQ(rt.stats().sites, 0u) << "a refused site list registered sites";
    EXPECT_EQ(rt.stats().blobs, 0u);
    EXPECT_EQ(rt.arenaInfo().used, usedBefore) << "installCode kept the reservation of a refused blob";
  }
  // The valid list installs, and every site decodes to the key's target.
  std::vector<SiteSpec> good = {{3, k, SiteForm::kDirect}, {10, k, SiteForm::kToggle}, {24, k, SiteForm::kBreakpoint}};
  Result<Blob> b = rt.installCode(code, good);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_EQ(rt.stats().sites, 3u);
  for (const SiteSpec& s : good) {
    Result<SiteInfo> info = rt.site(static_cast<uint8_t*>(b->code) + s.offset);
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    EXPECT_EQ(info->target, fnOne());
  }
}

// commitCode used to accept any range inside the arena: a second blob over live code.
TEST(HardeningBadInput, CommitOfAForgedReservationIsRefused) {
  Runtime rt = makeRuntime();
  Result<Blob> live = installReturner(rt, 5);
  ASSERT_TRUE(live.isOk());
  auto* rx = static_cast<uint8_t*>(live->code);
  auto* rw = static_cast<uint8_t*>(const_cast<void*>(rt.arenaInfo().rwBase)) +
             (rx - static_cast<const uint8_t*>(rt.arenaInfo().rxBase));
  Result<Blob> forged = rt.commitCode(CodeReservation{rx, rw, live->size}, {});
  EXPECT_EQ(forged.code(), Error::kInvalidArgument) << "commitCode over a live blob's range: " << forged.status().toString();
  Result<CodeReservation> r = rt.reserveCode(64);
  ASSERT_TRUE(r.isOk());
  std::memcpy(r->rw, test::retBytes().data(), test::retBytes().size());
  ASSERT_TRUE(rt.commitCode(*r, {}).isOk());
  Result<Blob> twice = rt.commitCode(*r, {});
  EXPECT_EQ(twice.code(), Error::kInvalidArgument) << "the same reservation committed twice: " << twice.status().toString();
  EXPECT_EQ(rt.stats().blobs, 2u) << "forged commits registered extra blobs";
}

// abandonCode used to release (and int3-fill) any range, live code included.
TEST(HardeningBadInput, AbandonOfACommittedRangeLeavesTheBlobAlone) {
  Runtime rt = makeRuntime();
  Result<Blob> live = installReturner(rt, 5);
  ASSERT_TRUE(live.isOk());
  size_t used = rt.arenaInfo().used;
  auto* rx = static_cast<uint8_t*>(live->code);
  rt.abandonCode(CodeReservation{rx, nullptr, live->size});
  EXPECT_NE(rx[0], test::fillByte()) << "abandonCode of a committed blob filled live code";
  EXPECT_EQ(rt.arenaInfo().used, used) << "abandonCode of a committed blob released its memory";
  if (rx[0] != test::fillByte()) {
    EXPECT_EQ(callInt(rx), 5);
  }
}

TEST(HardeningBadInput, CommitCodeFromThePatchObserverIsReentrant) {
  std::vector<Status> nested;
  Runtime* self = nullptr;
  Options o = quietManualOptions();
  o.patchObserver = [&](const PatchEvent&) {
    if (!nested.empty() || self == nullptr) return;
    nested.push_back(self->installCode(test::retBytes(), {}).status());
    Result<CodeReservation> r = self->reserveCode(64);  // reserving does not take the text mutex
    nested.push_back(r.status());
    if (r) {
      nested.push_back(self->commitCode(*r, {}).status());
      self->abandonCode(*r);
    }
  };
  Runtime rt = makeRuntime(o);
  self = &rt;
  Result<Key> k = rt.createKey(fnOne());
  ASSERT_TRUE(k.isOk());
  ASSERT_TRUE(rt.update(*k, fnTwo()).isOk());
  ASSERT_EQ(nested.size(), 3u);
  EXPECT_EQ(nested[0].code(), Error::kReentrantUpdate) << nested[0].toString();
  EXPECT_TRUE(nested[1].isOk()) << nested[1].toString();
  EXPECT_EQ(nested[2].code(), Error::kReentrantUpdate) << nested[2].toString();
  EXPECT_EQ(rt.stats().blobs, 0u);
}

// Every text-mutex entry point called from the patch observer (which runs under the text
// mutex) must return, not self-deadlock. Runs in a child with an alarm so a deadlock fails
// the test instead of hanging it (target() and the other read-only calls used to relock the
// mutex).
void observerCallsEveryEntryPoint() {
  alarm(5);
  Options o = quietManualOptions();
  Runtime* self = nullptr;
  Key key;
  void* blobCode = nullptr;
  bool inside = false;
  o.patchObserver = [&](const PatchEvent&) {
    if (inside || self == nullptr) return;
    inside = true;
    auto step = [](const char* what, const Status& s) { std::fprintf(stderr, "%s from the observer: %s\n", what, s.toString().c_str()); };
    step("target()", self->target(key).status());
    step("trampoline()", self->trampoline(key).status());
    step("targetCell()", self->targetCell(key).status());
    step("site()", self->site(blobCode).status());
    step("destroyKey()", self->destroyKey(Key{999}));
    step("retire(Blob)", self->retire(Blob{999, blobCode, 64}));
    step("unregisterForeignSite()", self->unregisterForeignSite(blobCode));
    (void)self->stats();
    std::fprintf(stderr, "stats() from the observer returned\n");
    std::fflush(stderr);
  };
  Result<Runtime> rt = Runtime::create(o);
  if (!rt) _exit(10);
  self = &*rt;
  Result<Key> k = rt->createKey(fnOne());
  if (!k) _exit(11);
  key = *k;
  Result<Blob> b = installCaller(*rt, key);
  if (!b) _exit(12);
  blobCode = b->code;
  if (!rt->update(key, fnTwo())) _exit(13);
  std::fprintf(stderr, "every entry point returned\n");
  std::fflush(stderr);
  _exit(0);
}

TEST(HardeningBadInputDeathTest, EntryPointsCalledFromThePatchObserverReturn) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(observerCallsEveryEntryPoint(), ::testing::ExitedWithCode(0), "every entry point returned");
}

// A patch observer of runtime A that updates runtime B: B's update works when it needs no
// breakpoint round (and A's re-entry marker survives it: a nested A update is still refused),
// and is refused (kReentrantUpdate, nothing written) when both need the process-wide round.
// In a child with an alarm: both cases used to deadlock.
void observerUpdatesAnotherRuntime(SiteForm form) {
  alarm(5);
  Options ob = quietManualOptions();
  Result<Runtime> b = Runtime::create(ob);
  if (!b) _exit(10);
  Result<Key> kb = b->createKey(fnOne());
  if (!kb || test::installCallers(*b, {*kb}, form).size() != 1) _exit(11);
  Runtime* a = nullptr;
  Key ka;
  bool inside = false;
  Status fromObserverB, fromObserverA;
  Options oa = quietManualOptions();
  oa.patchObserver = [&](const PatchEvent&) {
    if (inside || a == nullptr) return;
    inside = true;
    fromObserverB = b->update(*kb, fnTwo()).status();
    fromObserverA = a->update(ka, fnOne()).status();
  };
  Result<Runtime> ra = Runtime::create(oa);
  if (!ra) _exit(12);
  Result<Key> k = ra->createKey(fnOne());
  if (!k || test::installCallers(*ra, {*k}, form).size() != 1) _exit(13);
  ka = *k;
  a = &*ra;
  Status outer = ra->update(ka, fnTwo()).status();
  Result<const void*> bTarget = b->target(*kb);
  std::fprintf(stderr, "outer %s; B from A's observer: %s; A from its own observer: %s; B's target is %s\n",
               outer.toString().c_str(), fromObserverB.toString().c_str(), fromObserverA.toString().c_str(),
               bTarget.isOk() && *bTarget == fnTwo() ? "new" : "old");
  std::fflush(stderr);
  bool ok = outer.isOk() && fromObserverA.code() == Error::kReentrantUpdate &&
            (form == SiteForm::kBreakpoint ? fromObserverB.code() == Error::kReentrantUpdate && *bTarget == fnOne()
                                           : fromObserverB.isOk() && *bTarget == fnTwo());
  _exit(ok ? 0 : 1);
}

TEST(HardeningBadInputDeathTest, ObserverUpdatingAnotherRuntimeKeepsTheReentryMarker) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(observerUpdatesAnotherRuntime(SiteForm::kDirect), ::testing::ExitedWithCode(0), "B from A's observer: ok");
}

TEST(HardeningBadInputDeathTest, ObserverUpdatingAnotherRuntimesBreakpointSitesIsRefused) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(observerUpdatesAnotherRuntime(SiteForm::kBreakpoint), ::testing::ExitedWithCode(0),
              "B from A's observer: re-entrant update");
}

// ---- jit:: ---------------------------------------------------------------------------------

TEST(HardeningBadInput, AssemblerMisuse) {
  Runtime rt = makeRuntime();
  Result<Key> key = rt.createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  {
    jit::Assembler empty(rt);
    EXPECT_ERROR(jit::install(empty), Error::kInvalidArgument);
  }
  jit::Assembler a(rt);
  test::emitEnter(a);
  EXPECT_ERROR(jit::emitFixedCall(a, nullptr), Error::kNullTarget);
  ASSERT_TRUE(jit::emitCall(a, *key).isOk());
  test::emitLeave(a);
  test::emitRet(a);
  Result<Blob> b = jit::install(a);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_TRUE(a.installed());
  EXPECT_ERROR(jit::install(a), Error::kInvalidArgument);
  EXPECT_ERROR(jit::emitCall(a, *key), Error::kInvalidArgument);
  EXPECT_ERROR(jit::emitSafepointPoll(a), Error::kInvalidArgument);
  EXPECT_ERROR(jit::emitFixedCall(a, fnOne()), Error::kInvalidArgument);
  EXPECT_EQ(rt.stats().blobs, 1u) << "a refused second install registered a blob";
  EXPECT_EQ(callInt(b->code), 1);
}

TEST(HardeningBadInput, SiteFormOutsideTheEnumIsRefusedAtInstall) {
  Runtime rt = makeRuntime();
  Result<Key> key = rt.createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  jit::Assembler a(rt);
  Status e = jit::emitCall(a, *key, static_cast<SiteForm>(9));
  test::emitRet(a);
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(!e.isOk() || !b.isOk()) << "a site of form 9 was installed";
  if (e.isOk()) EXPECT_ERROR(b, Error::kInvalidArgument);
  EXPECT_EQ(rt.stats().sites, 0u);
}

// An RX page more than 8 GiB from the arena holding `result = 0x5A ; ret`.
class FarCode {
 public:
  explicit FarCode(const void* near) {
    constexpr uint64_t kGiB = uint64_t{1} << 30;
    uint64_t base = reinterpret_cast<uint64_t>(near) & ~(kGiB - 1);
    for (uint64_t gib = 16; gib <= 4096 && page_ == nullptr; gib *= 2) {
      void* p = mmap(reinterpret_cast<void*>(base + gib * kGiB), 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p != MAP_FAILED) page_ = static_cast<uint8_t*>(p);
    }
    if (page_ == nullptr) return;
    std::vector<uint8_t> code = test::returnerBytes(0x5A);
    std::memcpy(page_, code.data(), code.size());
    mprotect(page_, 4096, PROT_READ | PROT_EXEC);
  }
  ~FarCode() {
    if (page_ != nullptr) munmap(page_, 4096);
  }
  const void* fn() const { return page_; }

 private:
  uint8_t* page_ = nullptr;
};

TEST(HardeningBadInput, FixedCallBeyondRel32IsOutOfRangeAndReleasesTheReservation) {
  Runtime rt = makeRuntime();
  FarCode far(rt.arenaInfo().rxBase);
  ASSERT_NE(far.fn(), nullptr) << "no far page could be mapped";
  size_t used = rt.arenaInfo().used;
  jit::Assembler a(rt);
  test::emitEnter(a);
  ASSERT_TRUE(jit::emitFixedCall(a, far.fn()).isOk());
  test::emitLeave(a);
  test::emitRet(a);
  if (test::fixedCallsReachAnywhere()) {  // aarch64: through the blob's own veneer
    Result<Blob> b = jit::install(a);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    EXPECT_EQ(callInt(b->code), 0x5A);
    return;
  }
  EXPECT_ERROR(jit::install(a), Error::kOutOfRange);
  EXPECT_EQ(rt.arenaInfo().used, used) << "a refused install kept its arena memory";
  EXPECT_EQ(rt.stats().blobs, 0u);
}

// asmjit errors must surface as kEmitFailed, never as silently wrong code.
TEST(HardeningBadInput, AsmjitErrorsAreEmitFailed) {
  Runtime rt = makeRuntime();
  {
    jit::Assembler a(rt);
    asmjit::Label never = a.newLabel();
    test::emitJump(a, never);  // never bound: the jump has no destination
    test::emitRet(a);
    Result<Blob> b = jit::install(a);
    EXPECT_EQ(b.code(), Error::kEmitFailed) << "install with an unbound label: " << b.status().toString();
  }
  {
    jit::Assembler a(rt);
    asmjit::Error err = test::emitInvalidInstruction(a);  // operand sizes differ
    EXPECT_NE(err, asmjit::kErrorOk) << "asmjit accepted an instruction with mismatched operand sizes";
    test::emitSetResult(a, 3);
    test::emitRet(a);
    Result<Blob> b = jit::install(a);
    EXPECT_EQ(b.code(), Error::kEmitFailed)
        << "install after an instruction asmjit refused (the code would silently lack it): " << b.status().toString();
  }
  // The embedder's own error handler (tinyvm has one) is chained: it sees the error and
  // install() still refuses. It used to replace patchcall's recorder: install() said OK.
  struct Count : asmjit::ErrorHandler {
    int errors = 0;
    void handleError(asmjit::Error, const char*, asmjit::BaseEmitter*) override { ++errors; }
  } mine;
  {
    jit::Assembler a(rt);
    a.setErrorHandler(&mine);
    EXPECT_EQ(a.errorHandler(), &mine);
    (void)test::emitInvalidInstruction(a);
    test::emitSetResult(a, 3);
    test::emitRet(a);
    EXPECT_EQ(mine.errors, 1) << "the embedder's handler was not called";
    Result<Blob> b = jit::install(a);
    EXPECT_EQ(b.code(), Error::kEmitFailed) << "install with the embedder's handler set: " << b.status().toString();
  }
  {
    jit::Assembler a(rt);
    static_cast<asmjit::BaseEmitter&>(a).setErrorHandler(&mine);  // bypasses the chaining
    test::emitSetResult(a, 3);
    test::emitRet(a);
    Result<Blob> b = jit::install(a);
    EXPECT_EQ(b.code(), Error::kEmitFailed) << "install cannot vouch for the code: " << b.status().toString();
    EXPECT_NE(b.status().message().find("setErrorHandler"), std::string::npos) << b.status().toString();
  }
}

// ---- quiescence ----------------------------------------------------------------------------

TEST(HardeningBadInput, SafepointAndOfflineScopeOnAnUnregisteredThreadAreNoOps) {
  Runtime rt = makeRuntime();
  ASSERT_FALSE(isThreadRegistered());
  safepoint();
  {
    OfflineScope offline;
    EXPECT_EQ(goOffline().code(), Error::kNotRegistered);
  }
  ThreadScope none;
  EXPECT_FALSE(none.active());
  none.reset();
  none.reset();
  EXPECT_TRUE(rt.synchronize(100ms).isOk());
}

TEST(HardeningBadInput, ThreadScopeMoveAssignmentUnregistersTheOldRegistration) {
  Runtime rt = makeRuntime();
  Result<ThreadScope> s = rt.registerThread("mover");
  ASSERT_TRUE(s.isOk());
  ThreadScope holder = std::move(*s);
  EXPECT_FALSE(s->active());
  EXPECT_TRUE(holder.active());
  holder = ThreadScope();  // move-assigning an empty scope unregisters
  EXPECT_FALSE(isThreadRegistered());
  Result<ThreadScope> again = rt.registerThread("mover-again");
  EXPECT_TRUE(again.isOk()) << again.status().toString();
}

TEST(HardeningBadInput, ZeroDeadlinesAreBoundedWaits) {
  qtest::DiagnosticLog log;
  Options o = quietManualOptions();
  o.diagnosticSink = log.sink();
  Runtime rt = makeRuntime(o);
  EXPECT_TRUE(rt.synchronize(0ms).isOk()) << "nothing registered: a grace period completes at once";
  qtest::TestThread stuck;
  ASSERT_TRUE(stuck.registerWith(rt, "stuck-reader").isOk());
  auto start = qtest::Clock::now();
  EXPECT_ERROR(rt.synchronize(0ms), Error::kTimeout);
  ASSERT_TRUE(rt.retire([] {}).isOk());
  EXPECT_ERROR(rt.barrier(0ms), Error::kTimeout);
  EXPECT_LT(qtest::msSince(start), 1000) << "zero deadlines waited";
  EXPECT_FALSE(log.matching("stuck-reader").empty()) << log.all();
  ASSERT_TRUE(stuck.unregister());
  EXPECT_TRUE(rt.barrier(2000ms).isOk());
}

TEST(HardeningBadInput, BarrierInsideARetireCallbackWouldDeadlock) {
  Runtime rt = makeRuntime();
  Status inside;
  ASSERT_TRUE(rt.retire([&] { inside = rt.barrier(100ms); }).isOk());
  ASSERT_TRUE(rt.barrier(2000ms).isOk());
  EXPECT_EQ(inside.code(), Error::kWouldDeadlock) << inside.toString();
}

// A toggle flipped less than a grace period ago cannot be rewritten: with a registered thread
// stuck online the update waits for Options::graceDeadline and returns kTimeout, writing nothing.
TEST(HardeningBadInput, UpdateOfARecentlyFlippedToggleTimesOutWithoutWriting) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  Options o = quietManualOptions();
  o.graceDeadline = 50ms;
  Runtime rt = makeRuntime(o);
  Result<Key> key = rt.createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> toggle = installCaller(rt, *key, SiteForm::kToggle);
  ASSERT_TRUE(toggle.isOk()) << toggle.status().toString();
  ASSERT_TRUE(rt.update(*key, fnTwo()).isOk());  // flip
  qtest::TestThread stuck;
  ASSERT_TRUE(stuck.registerWith(rt, "stuck-reader").isOk());
  RuntimeStats before = rt.stats();
  auto start = qtest::Clock::now();
  EXPECT_ERROR(rt.update(*key, fnOne()), Error::kTimeout);
  KeyUpdate batch[] = {{*key, fnOne()}};
  EXPECT_ERROR(rt.updateBatch(batch), Error::kTimeout);
  EXPECT_LT(qtest::msSince(start), 2000) << "the waits were not bounded by graceDeadline";
  EXPECT_EQ(rt.stats().siteWrites, before.siteWrites) << "a timed-out update wrote code";
  EXPECT_EQ(rt.target(*key).value(), fnTwo());
  EXPECT_EQ(callInt(toggle->code), 2);
  ASSERT_TRUE(stuck.unregister());
  ASSERT_TRUE(rt.update(*key, fnOne()).isOk());
  EXPECT_EQ(callInt(toggle->code), 1);
}

// ---- foreign sites -------------------------------------------------------------------------

// test::foreignCaller on a page within the call's reach of `near` (the call at +kForeignCallOffset).
uint8_t* mapForeignCall(const void* near, const void* target) {
  const uintptr_t step = uintptr_t{2} << 20;
  uintptr_t base = reinterpret_cast<uintptr_t>(near) & ~(step - 1);
  for (uintptr_t d = 1; d < 256; ++d) {
    for (uintptr_t at : {base - d * step, base + d * step}) {
      void* p = mmap(reinterpret_cast<void*>(at), 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) continue;
      auto* code = static_cast<uint8_t*>(p);
      std::vector<uint8_t> caller = test::foreignCaller(at, reinterpret_cast<uintptr_t>(target));
      if (caller.empty()) {
        munmap(p, 4096);
        continue;
      }
      std::memset(code, test::fillByte(), 4096);
      std::memcpy(code, caller.data(), caller.size());
      mprotect(code, 4096, PROT_READ | PROT_EXEC);
      return code;
    }
  }
  return nullptr;
}

// Found by api_fuzz: the registration's retarget used to time out on the toggle grace rule
// of the key's other sites (and, before that fix, stay registered). A registration now
// patches only its own site: it never waits for (or rewrites) the key's toggles.
TEST(HardeningBadInput, ForeignRegistrationDoesNotWaitForTheKeysToggles) {
  PATCHCALL_SKIP_UNLESS_X86_FORMS();
  Options o = quietManualOptions();
  o.graceDeadline = 50ms;
  Runtime rt = makeRuntime(o);
  Result<Key> key = rt.createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> toggle = installCaller(rt, *key, SiteForm::kToggle);
  ASSERT_TRUE(toggle.isOk()) << toggle.status().toString();
  ASSERT_TRUE(rt.update(*key, fnTwo()).isOk());  // flips the toggle: the next rewrite needs a grace period
  uint8_t* foreign = mapForeignCall(rt.arenaInfo().rxBase, fnOne());
  ASSERT_NE(foreign, nullptr);
  qtest::TestThread stuck;
  ASSERT_TRUE(stuck.registerWith(rt, "stuck-reader").isOk());
  RuntimeStats before = rt.stats();
  Status s = rt.registerForeignSite(foreign + test::kForeignCallOffset, *key);
  EXPECT_TRUE(s.isOk()) << s.toString();
  EXPECT_EQ(rt.stats().toggleGraceWaits, before.toggleGraceWaits) << "the registration waited for a toggle";
  EXPECT_EQ(rt.stats().updates, before.updates) << "the registration updated the key";
  EXPECT_EQ(rt.stats().sites, before.sites + 1);
  EXPECT_EQ(callInt(foreign), 2);
  EXPECT_EQ(callInt(toggle->code), 2);
  ASSERT_TRUE(stuck.unregister());
  EXPECT_TRUE(rt.unregisterForeignSite(foreign + test::kForeignCallOffset).isOk());
  munmap(foreign, 4096);
}

}  // namespace
}  // namespace patchcall

// Resource exhaustion: each limit is an error value and the runtime stays usable.
//   - Options::maxSites, Options::maxKeys, the arena (veneer and trampoline chunks)
//   - memory: the address space (RLIMIT_AS) and mimalloc itself running dry; both run in a
//     fresh child process (EXPECT_EXIT) because they change process-wide state.
// (maxThreads: QuiescenceErrors.TooManyThreadsIsAnErrorAndTheRuntimeStaysUsable; arena full
// for code: BadInput.ArenaExhaustedAndStillUsable, InstallNoRoom.*)
#include <dlfcn.h>
#include <mimalloc.h>  // option numbers only: the functions are reached through dlsym
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "emulation.h"
#include "isa.h"
#include "error_checks.h"
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

// `enter ; call k1 ; ... call kn ; leave ; ret` with n Direct sites.
Result<Blob> installSites(Runtime& rt, Key key, int n) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  for (int i = 0; i < n; ++i) PATCHCALL_TRY(jit::emitCall(a, key));
  test::emitLeave(a);
  test::emitRet(a);
  return jit::install(a);
}

TEST(HardeningExhaustion, TooManySitesIsAnErrorAndTheRuntimeStaysUsable) {
  Options o = quietManualOptions();
  o.maxSites = 4;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> three = installSites(*rt, *key, 3);
  ASSERT_TRUE(three.isOk()) << three.status().toString();
  size_t used = rt->arenaInfo().used;

  EXPECT_ERROR(installSites(*rt, *key, 2), Error::kTooManySites);
  // Two calls back to back: x86's rel32s are unaligned there (Breakpoint sites), A64's are Direct.
  const size_t n = test::callSize();
  std::vector<uint8_t> two(2 * n);
  ASSERT_TRUE(test::encodeCall(0, 0, two.data()) && test::encodeCall(n, n, two.data() + n));
  for (uint8_t b : test::retBytes()) two.push_back(b);
  const SiteForm form = test::hasToggleAndBreakpointForms() ? SiteForm::kBreakpoint : SiteForm::kDirect;
  EXPECT_ERROR(rt->installCode(two, std::vector<SiteSpec>{{0, *key, form}, {static_cast<uint32_t>(n), *key, form}}),
                         Error::kTooManySites);
  EXPECT_EQ(rt->stats().sites, 3u) << "a refused install registered sites";
  EXPECT_EQ(rt->arenaInfo().used, used) << "a refused install kept its arena memory";
  // Exactly at the limit is fine; one more is not.
  Result<Blob> fourth = installSites(*rt, *key, 1);
  ASSERT_TRUE(fourth.isOk()) << fourth.status().toString();
  EXPECT_ERROR(installSites(*rt, *key, 1), Error::kTooManySites);

  // Still usable: updates reach every site; retiring a blob gives its sites back.
  ASSERT_TRUE(rt->update(*key, fnTwo()).isOk());
  EXPECT_EQ(callInt(fourth->code), 2);
  ASSERT_TRUE(rt->retire(*three).isOk());
  ASSERT_TRUE(rt->barrier(2000ms).isOk());
  EXPECT_EQ(rt->stats().sites, 1u);
  Result<Blob> again = installSites(*rt, *key, 3);
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_EQ(rt->stats().sites, 4u);
}

TEST(HardeningExhaustion, MaxKeysIsAnErrorAndExistingKeysKeepWorking) {
  Options o = quietManualOptions();
  o.maxKeys = 3;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<Key> keys;
  for (int i = 0; i < 3; ++i) {
    Result<Key> k = rt->createKey(fnOne());
    ASSERT_TRUE(k.isOk()) << "key " << i << ": " << k.status().toString();
    keys.push_back(*k);
  }
  EXPECT_ERROR(rt->createKey(fnOne()), Error::kInvalidArgument);
  // Key ids are never reused, so destroying one does not give the quota back (documented).
  ASSERT_TRUE(rt->destroyKey(keys[2]).isOk());
  EXPECT_ERROR(rt->createKey(fnOne()), Error::kInvalidArgument);
  ASSERT_TRUE(rt->update(keys[0], fnTwo()).isOk());
  Result<Blob> caller = installCaller(*rt, keys[0]);
  ASSERT_TRUE(caller.isOk());
  EXPECT_EQ(callInt(caller->code), 2);
}

// Fills the arena with 64-byte reservations so no new 4 KiB pool chunk fits.
std::vector<CodeReservation> fillArena(Runtime& rt) {
  std::vector<CodeReservation> held;
  for (size_t size : {size_t{4096}, size_t{64}}) {
    while (true) {
      Result<CodeReservation> r = rt.reserveCode(size);
      if (!r) break;
      held.push_back(*r);
    }
  }
  return held;
}

// An RX page far (> 8 GiB) from the arena: `result = 0x5A ; ret`.
const void* farFunction(const void* near) {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  uint64_t base = reinterpret_cast<uint64_t>(near) & ~(kGiB - 1);
  for (uint64_t gib = 16; gib <= 4096; gib *= 2) {
    void* p = mmap(reinterpret_cast<void*>(base + gib * kGiB), 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) continue;
    std::vector<uint8_t> code = test::returnerBytes(0x5A);
    std::memcpy(p, code.data(), code.size());
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    return p;
  }
  return nullptr;
}

TEST(HardeningExhaustion, FullArenaRefusesNewVeneersAndTrampolinesThenRecovers) {
  Options o = quietManualOptions();
  o.arenaSize = size_t{64} << 10;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> caller = installCaller(*rt, *key);
  ASSERT_TRUE(caller.isOk());
  const void* far = farFunction(rt->arenaInfo().rxBase);
  ASSERT_NE(far, nullptr);
  std::vector<CodeReservation> held = fillArena(*rt);
  ASSERT_FALSE(held.empty());
  RuntimeStats before = rt->stats();

  // The first far target needs a veneer chunk: no room, nothing patched.
  EXPECT_ERROR(rt->update(*key, far), Error::kArenaExhausted);
  EXPECT_EQ(rt->target(*key).value(), fnOne());
  EXPECT_EQ(callInt(caller->code), 1);
  EXPECT_EQ(rt->stats().siteWrites, before.siteWrites);
  // Keys fit until the trampoline chunk (256 slots of 16 bytes) is used up.
  Status keyStatus;
  int created = 0;
  for (int i = 0; i < 600 && keyStatus.isOk(); ++i) {
    Result<Key> k = rt->createKey(fnOne());
    keyStatus = k.status();
    created += k.isOk();
  }
  EXPECT_ERROR(keyStatus, Error::kArenaExhausted);
  EXPECT_LT(created, 600);

  // Give the memory back: both work, and the site follows.
  for (const CodeReservation& r : held) rt->abandonCode(r);
  Result<const void*> viaVeneer = rt->update(*key, far);
  ASSERT_TRUE(viaVeneer.isOk()) << viaVeneer.status().toString();
  EXPECT_EQ(callInt(caller->code), 0x5A);
  EXPECT_EQ(rt->stats().veneers, 1u);
  EXPECT_TRUE(rt->createKey(fnTwo()).isOk());
}

// ---- memory ---------------------------------------------------------------------------------

size_t virtualMemorySize() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  statm >> pages;
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// A big read-only view of zero pages (no memory used), to pass huge names / site lists.
template <typename T>
std::span<const T> zeroSpan(size_t count) {
  void* p = mmap(nullptr, count * sizeof(T), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return {};
  return std::span<const T>(static_cast<const T*>(p), count);
}

#define CHILD_CHECK(cond, ...)                                   \
  do {                                                           \
    if (!(cond)) {                                               \
      std::fprintf(stderr, "FAILED %s: ", #cond);                \
      std::fprintf(stderr, __VA_ARGS__);                         \
      std::fprintf(stderr, "\n");                                \
      ++failures;                                                \
    }                                                            \
  } while (0)

// The address space is capped just above what the process uses; metadata allocations for a
// huge key name, thread name or site list then fail inside mimalloc.
void addressSpaceCapChild() {
  int failures = 0;
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  if (!rt) _exit(10);
  Result<Key> key = rt->createKey(fnOne(), "before-the-cap");
  Result<Blob> caller = key ? installCaller(*rt, *key) : Result<Blob>(Error::kUnknownKey, "");
  if (!caller) _exit(11);
  constexpr size_t kHuge = size_t{512} << 20;
  std::span<const char> hugeName = zeroSpan<char>(kHuge);
  std::span<const SiteSpec> hugeSites = zeroSpan<SiteSpec>(kHuge / sizeof(SiteSpec));
  if (hugeName.empty() || hugeSites.empty()) _exit(12);
  std::vector<uint8_t> code(64, 0xC3);

  rlimit old{};
  getrlimit(RLIMIT_AS, &old);
  rlimit cap = old;
  cap.rlim_cur = virtualMemorySize() + (size_t{96} << 20);  // headroom for small allocations (and ASan's)
  if (setrlimit(RLIMIT_AS, &cap) != 0) _exit(13);

  Result<Key> big = rt->createKey(fnOne(), std::string_view(hugeName.data(), hugeName.size()));
  CHILD_CHECK(big.code() == Error::kOutOfMemory, "createKey(512 MiB name): %s", big.status().toString().c_str());
  Result<ThreadScope> thread = rt->registerThread(std::string_view(hugeName.data(), hugeName.size()));
  CHILD_CHECK(thread.code() == Error::kOutOfMemory, "registerThread(512 MiB name): %s", thread.status().toString().c_str());
  CHILD_CHECK(!isThreadRegistered(), "a failed registration left the thread registered");
  size_t sitesBefore = rt->stats().sites;
  Result<Blob> blob = rt->installCode(code, hugeSites);
  CHILD_CHECK(blob.code() == Error::kOutOfMemory, "installCode(44M site specs): %s", blob.status().toString().c_str());
  CHILD_CHECK(rt->stats().sites == sitesBefore, "a failed install registered sites");
  // Usable while memory is still tight.
  Result<const void*> upd = rt->update(*key, fnTwo());
  CHILD_CHECK(upd.isOk(), "update under the cap: %s", upd.status().toString().c_str());
  CHILD_CHECK(callInt(caller->code) == 2, "the site does not call the new target");

  setrlimit(RLIMIT_AS, &old);
  Result<Key> after = rt->createKey(fnOne(), "after-the-cap");
  CHILD_CHECK(after.isOk(), "createKey after lifting the cap: %s", after.status().toString().c_str());
  Result<ThreadScope> reg = rt->registerThread("after-the-cap");
  CHILD_CHECK(reg.isOk(), "registerThread after lifting the cap: %s", reg.status().toString().c_str());
  if (reg) reg->reset();
  Result<Blob> fresh = after ? installCaller(*rt, *after) : Result<Blob>(Error::kUnknownKey, "");
  CHILD_CHECK(fresh.isOk() && callInt(fresh->code) == 1, "install after lifting the cap");
  std::fprintf(stderr, "address-space cap: %d failures\n", failures);
  std::fflush(stderr);
  _exit(failures == 0 ? 0 : 1);
}

TEST(HardeningExhaustionDeathTest, AddressSpaceCapIsOutOfMemoryAndTheRuntimeStaysUsable) {
  PATCHCALL_SKIP_IF_EMULATED("qemu-user does not apply setrlimit(RLIMIT_AS) to the guest");
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(addressSpaceCapChild(), ::testing::ExitedWithCode(0), "address-space cap: 0 failures");
}

void arenaMapFailureChild() {
  rlimit cap{};
  getrlimit(RLIMIT_AS, &cap);
  cap.rlim_cur = virtualMemorySize() + (size_t{16} << 20);
  if (setrlimit(RLIMIT_AS, &cap) != 0) _exit(13);
  Options o = quietManualOptions();
  o.arenaSize = size_t{1} << 30;  // two 1 GiB mappings cannot fit under the cap
  Result<Runtime> rt = Runtime::create(o);
  std::fprintf(stderr, "create under the cap: %s\n", rt.status().toString().c_str());
  std::fflush(stderr);
  _exit(rt.code() == Error::kMapFailed ? 0 : 1);
}

TEST(HardeningExhaustionDeathTest, ArenaThatCannotBeMappedIsMapFailed) {
  PATCHCALL_SKIP_IF_EMULATED("qemu-user does not apply setrlimit(RLIMIT_AS) to the guest");
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(arenaMapFailureChild(), ::testing::ExitedWithCode(0), "mapping failed");
}

// mimalloc itself runs dry: no OS memory for it any more (mi_option_limit_os_alloc) and every
// block of every size class taken. patchcall loads libmimalloc.so.2 privately (RTLD_LOCAL,
// runtime/metadata.cpp); dlopen of the same file returns that same instance, so the test can
// drive it. Then each public entry point must return an error value (or succeed when it needs
// no metadata memory) -- no exception, no abort, no wedged lock -- and afterwards the runtime
// works normally. The child names each call before making it, so an abort points at it.
struct Mimalloc {
  void* (*malloc)(size_t) = nullptr;
  void (*free)(void*) = nullptr;
  void (*optionSet)(int, long) = nullptr;
  static constexpr int kShowErrors = mi_option_show_errors;
  static constexpr int kLimitOsAlloc = mi_option_limit_os_alloc;
  static Mimalloc load() {
    Mimalloc m;
    void* lib = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return m;
    m.malloc = reinterpret_cast<void* (*)(size_t)>(dlsym(lib, "mi_malloc"));
    m.free = reinterpret_cast<void (*)(void*)>(dlsym(lib, "mi_free"));
    m.optionSet = reinterpret_cast<void (*)(int, long)>(dlsym(lib, "mi_option_set"));
    return m;
  }
  bool ok() const { return malloc != nullptr && free != nullptr && optionSet != nullptr; }
};

class MimallocHoard {
 public:
  explicit MimallocHoard(const Mimalloc& mi) : mi_(mi) { blocks_.reserve(size_t{1} << 20); }
  void fill() {
    static const size_t kSizes[] = {size_t{4} << 20, size_t{1} << 20, size_t{64} << 10, 4096, 1024};
    for (size_t size : kSizes) grab(size);
    for (size_t size = 512; size >= 8; size -= 8) grab(size);
  }
  void release() {
    for (void* p : blocks_) mi_.free(p);
    blocks_.clear();
  }
  size_t blocks() const { return blocks_.size(); }

 private:
  void grab(size_t size) {
    while (blocks_.size() < blocks_.capacity()) {
      void* p = mi_.malloc(size);
      if (p == nullptr) return;
      blocks_.push_back(p);
    }
  }
  const Mimalloc& mi_;
  std::vector<void*> blocks_;
};

const char* outcome(const std::function<Status()>& call) {
  try {
    Status s = call();
    return errorName(s.code());
  } catch (...) {
    return "EXCEPTION";
  }
}

void mimallocDryChild() {
  alarm(30);  // a wedged lock must fail the test, not hang it
  int failures = 0;
  Options o = quietManualOptions();
  o.arenaSize = size_t{1} << 20;
  Result<Runtime> created = Runtime::create(o);
  if (!created) _exit(10);
  Runtime& rt = *created;
  Result<Key> key = rt.createKey(fnOne(), "key");
  Result<Blob> caller = key ? installCaller(rt, *key) : Result<Blob>(Error::kUnknownKey, "");
  Result<Blob> spare = installReturner(rt, 7), pending = installReturner(rt, 6);
  if (!caller || !spare || !pending) _exit(11);
  // Work already queued, so barrier/poll must build a stack-scan round while dry.
  int callbacksRun = 0;
  if (!rt.retire(*pending) || !rt.retire([&] { ++callbacksRun; })) _exit(11);
  qtest::TestThread reader;  // a registered thread makes grace periods copy the thread list
  if (!reader.registerWith(rt, "reader").isOk()) _exit(12);
  if (!reader.run([] { (void)goOffline(); })) _exit(12);
  const std::string longName(200, 'n');
  const std::vector<uint8_t> ret16(16, 0xC3);
  // installCaller: its frame, (x86: NOP padding), then the Direct site.
  const auto* code = static_cast<const uint8_t*>(caller->code);
  const void* siteAddress = nullptr;
  for (int i = 0; i < 16 && siteAddress == nullptr; ++i) siteAddress = test::directCallTarget(code + i) != 0 ? code + i : nullptr;
  if (siteAddress == nullptr || !rt.site(siteAddress)) _exit(14);

  struct Call {
    const char* name;
    std::function<Status()> fn;
  };
  const std::vector<Call> calls = {
      {"createKey", [&] { return rt.createKey(fnTwo(), longName).status(); }},
      {"update", [&] { return rt.update(*key, fnTwo()).status(); }},
      {"updateBatch", [&] { KeyUpdate u[] = {{*key, fnTwo()}}; return rt.updateBatch(u); }},
      {"installCode", [&] { return rt.installCode(ret16, {}).status(); }},
      {"jit::install", [&] { return installReturner(rt, 8).status(); }},
      {"reserveCode", [&] { Result<CodeReservation> r = rt.reserveCode(128); if (r) rt.abandonCode(*r); return r.status(); }},
      {"registerThread", [&] { Result<ThreadScope> s = rt.registerThread(longName); return s.status(); }},
      {"retire(callback)", [&] { return rt.retire([] {}); }},
      {"retire(Blob)", [&] { return rt.retire(*spare); }},
      {"site", [&] { return rt.site(siteAddress).status(); }},
      {"synchronize", [&] { return rt.synchronize(500ms); }},
      {"barrier", [&] { return rt.barrier(500ms); }},
      {"poll", [&] { (void)rt.poll(); return Status::ok(); }},
      {"stats", [&] { (void)rt.stats(); return Status::ok(); }},
  };
  const char* results[32] = {};

  Mimalloc mi = Mimalloc::load();
  if (!mi.ok()) _exit(13);
  MimallocHoard hoard(mi);  // its bookkeeping is allocated before the limit
  mi.optionSet(Mimalloc::kShowErrors, 0);
  mi.optionSet(Mimalloc::kLimitOsAlloc, 1);
  hoard.fill();
  std::fprintf(stderr, "mimalloc dry after %zu blocks\n", hoard.blocks());
  for (size_t i = 0; i < calls.size(); ++i) {
    std::fprintf(stderr, "  dry %-16s -> ", calls[i].name);
    results[i] = outcome(calls[i].fn);
    std::fprintf(stderr, "%s\n", results[i]);
  }
  hoard.release();
  mi.optionSet(Mimalloc::kLimitOsAlloc, 0);

  for (size_t i = 0; i < calls.size(); ++i) {
    bool fine = std::strcmp(results[i], "ok") == 0 || std::strcmp(results[i], errorName(Error::kOutOfMemory)) == 0;
    CHILD_CHECK(fine, "%s returned %s while mimalloc was dry", calls[i].name, results[i]);
  }
  bool retargeted = std::strcmp(results[1], "ok") == 0 || std::strcmp(results[2], "ok") == 0;
  CHILD_CHECK(callInt(caller->code) == (retargeted ? 2 : 1), "the caller does not call the key's target");
  // Everything works again, including what failed while dry.
  auto start = qtest::Clock::now();
  Status s = rt.synchronize(2000ms);
  CHILD_CHECK(s.isOk() && qtest::msSince(start) < 1000, "synchronize after the hoard: %s after %lld ms",
              s.toString().c_str(), qtest::msSince(start));
  Result<Key> k2 = rt.createKey(fnTwo(), longName);
  CHILD_CHECK(k2.isOk(), "createKey: %s", k2.status().toString().c_str());
  Result<const void*> u = rt.update(*key, fnOne());
  CHILD_CHECK(u.isOk() && callInt(caller->code) == 1, "update: %s", u.status().toString().c_str());
  if (std::strcmp(results[8], "ok") != 0) {  // retire(Blob) failed while dry: it must be retirable now
    Status r = rt.retire(*spare);
    CHILD_CHECK(r.isOk(), "retire(Blob) after a failed retire: %s", r.toString().c_str());
  }
  Status b = rt.barrier(2000ms);
  CHILD_CHECK(b.isOk(), "barrier: %s", b.toString().c_str());
  RuntimeStats st = rt.stats();
  CHILD_CHECK(st.blobsFreed == st.blobsRetired && st.blobsRetired == 2, "retired %llu, freed %llu (expected 2)",
              static_cast<unsigned long long>(st.blobsRetired), static_cast<unsigned long long>(st.blobsFreed));
  CHILD_CHECK(callbacksRun >= 1, "the callback retired before the dry phase never ran");
  Result<Blob> fresh = installReturner(rt, 9);
  CHILD_CHECK(fresh.isOk() && callInt(fresh->code) == 9, "install: %s", fresh.status().toString().c_str());
  reader.unregister();
  std::fprintf(stderr, "mimalloc dry: %d failures\n", failures);
  std::fflush(stderr);
  _exit(failures == 0 ? 0 : 1);
}

TEST(HardeningExhaustionDeathTest, MimallocOutOfMemoryIsAnErrorAtEveryEntryPoint) {
  if (!Mimalloc::load().ok()) GTEST_SKIP() << "libmimalloc.so.2 not loadable: metadata comes from libc";
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(mimallocDryChild(), ::testing::ExitedWithCode(0), "mimalloc dry: 0 failures");
}

}  // namespace
}  // namespace patchcall

// What registerForeignSite checks (executable mapping, overlaps, writability) and what every
// later update checks before it writes a foreign site (still mapped, still our call, still
// writable); and that a registration never changes its key's target.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "error_checks.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

using checks::callInt;
using checks::installCaller;
using checks::quietManualOptions;
using test::idOf;
using test::installTargets;
using test::mapForeignCode;
using test::ForeignPage;
using Clock = std::chrono::steady_clock;

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(p)));
  return buf;
}

struct Fixture {
  Runtime rt;
  std::vector<const void*> targets;
  Key key;
  static Fixture make() {
    Result<Runtime> r = Runtime::create(quietManualOptions());
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    Fixture f{std::move(*r), {}, {}};
    f.targets = installTargets(f.rt, 4, 70);
    Result<Key> k = f.rt.createKey(f.targets[1], "foreign-checks");
    EXPECT_TRUE(k.isOk()) << k.status().toString();
    f.key = *k;
    return f;
  }
};

// Maps `bytes` at the page `at` (fixed) as a MAP_SHARED memfd mapping, read + exec: a code
// cache the kernel will not let /proc/self/mem write.
bool mapSharedCopy(void* at, const uint8_t* bytes, bool fixed) {
  int fd = memfd_create("foreign-shared", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 4096) != 0 || pwrite(fd, bytes, 4096, 0) != 4096) return false;
  void* p = mmap(at, 4096, PROT_READ | PROT_EXEC, MAP_SHARED | (fixed ? MAP_FIXED : MAP_FIXED_NOREPLACE), fd, 0);
  close(fd);
  return p == at;
}

// ---- registration ---------------------------------------------------------------------------

alignas(16) uint8_t gDataCall[16] = {0xE8, 0, 0, 0, 0, 0xC3};

TEST(ForeignSiteChecks, CallBytesOutsideExecutableMemoryAreRefused) {
  Fixture f = Fixture::make();
  uint64_t sites = f.rt.stats().sites;
  uint8_t before[16];
  std::memcpy(before, gDataCall, 16);
  EXPECT_STATUS(f.rt.registerForeignSite(gDataCall, f.key), Error::kUnsupportedSite, "not executable");
  EXPECT_EQ(std::memcmp(before, gDataCall, 16), 0) << "a .data buffer was rewritten";

  auto* rw = static_cast<uint8_t*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(rw, MAP_FAILED);
  rw[0] = 0xE8;
  EXPECT_STATUS(f.rt.registerForeignSite(rw, f.key), Error::kUnsupportedSite, "not executable");
  EXPECT_EQ(rw[1], 0) << "an RW page was rewritten";
  munmap(rw, 4096);
  // Unmapped: refused before a byte of it is read (this used to fault).
  EXPECT_STATUS(f.rt.registerForeignSite(rw, f.key), Error::kUnsupportedSite, "mapped");

  if (test::instructionAlignment() == 1) {
    // An E8 in the last 3 bytes of an executable page whose rel32 runs into a data page.
    auto* two = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(two, MAP_FAILED);
    std::memset(two, 0xCC, 4096);
    two[4093] = 0xE8;
    ASSERT_EQ(mprotect(two, 4096, PROT_READ | PROT_EXEC), 0);
    EXPECT_STATUS(f.rt.registerForeignSite(two + 4093, f.key), Error::kUnsupportedSite, "not executable");
    EXPECT_EQ(two[4096], 0) << "the data page after the code was rewritten";
    munmap(two, 8192);
  }  // else aligned instructions never straddle a page (misaligned ones: ForeignSite.RegistrationErrors)
  EXPECT_EQ(f.rt.stats().sites, sites) << "a refused registration left a site behind";
}

TEST(ForeignSiteChecks, OverlappingForeignSitesAreRefused) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  if (test::instructionAlignment() > 1) {
    GTEST_SKIP() << "instructions are aligned words here: two calls never overlap (a misaligned address is refused, "
                    "ForeignSite.RegistrationErrors; the same one twice: 'already registered')";
  }
  Fixture f = Fixture::make();
  ForeignPage page{mapForeignCode(f.rt.arenaInfo().rxBase, f.targets[0])};
  ASSERT_NE(page.code, nullptr);
  // E8 on every byte from +31 to +40: every one of them looks like a call.
  ASSERT_EQ(mprotect(page.code, 4096, PROT_READ | PROT_WRITE), 0);
  std::memset(page.code + 31, 0xE8, 10);
  ASSERT_EQ(mprotect(page.code, 4096, PROT_READ | PROT_EXEC), 0);
  uint8_t* site = page.code + 36;
  ASSERT_TRUE(f.rt.registerForeignSite(site, f.key).isOk());
  uint8_t written[5];
  std::memcpy(written, site, 5);
  uint64_t sites = f.rt.stats().sites;
  for (int d = -4; d <= 4; ++d) {
    if (d == 0) continue;
    SCOPED_TRACE("offset " + std::to_string(d));
    EXPECT_STATUS(f.rt.registerForeignSite(site + d, f.key), Error::kInvalidArgument, "overlaps");
  }
  EXPECT_EQ(std::memcmp(written, site, 5), 0) << "an overlapping registration rewrote the first site";
  EXPECT_EQ(f.rt.stats().sites, sites);
  ASSERT_TRUE(f.rt.update(f.key, f.targets[2]).isOk());
  EXPECT_EQ(f.rt.site(site)->target, f.targets[2]);
  // Far enough away (+5) is fine.
  EXPECT_TRUE(f.rt.registerForeignSite(site - 5, f.key).isOk());
}

// Measured here (kernel 6.18): a write through /proc/self/mem into a MAP_SHARED mapping fails
// with EIO (FOLL_FORCE only breaks copy-on-write of private mappings); reading works.
TEST(ForeignSiteChecks, SiteInASharedMappingIsRefusedAtRegistration) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Fixture f = Fixture::make();
  ForeignPage page{mapForeignCode(f.rt.arenaInfo().rxBase, f.targets[0])};
  ASSERT_NE(page.code, nullptr);
  std::vector<uint8_t> copy(page.code, page.code + 4096);
  ASSERT_TRUE(mapSharedCopy(page.code, copy.data(), true));
  uint64_t sites = f.rt.stats().sites;
  EXPECT_STATUS(f.rt.registerForeignSite(page.code + 4, f.key), Error::kUnsupportedSite, "/proc/self/mem");
  EXPECT_EQ(f.rt.stats().sites, sites);
  EXPECT_EQ(f.rt.site(page.code + 4).code(), Error::kUnknownSite);
  EXPECT_EQ(callInt(page.code), idOf(f.targets[0])) << "the shared code still calls what it was written with";
}

// ---- later updates ----------------------------------------------------------------------------

struct Registered {
  Fixture f = Fixture::make();
  ForeignPage page{mapForeignCode(f.rt.arenaInfo().rxBase, f.targets[0])};
  int (*caller)() = nullptr;  // an arena site of the same key
  uint8_t* site() const { return page.code + 4; }
  void setUp() {
    ASSERT_NE(page.code, nullptr);
    Result<Blob> c = installCaller(f.rt, f.key);
    ASSERT_TRUE(c.isOk()) << c.status().toString();
    caller = reinterpret_cast<int (*)()>(c->code);
    ASSERT_TRUE(f.rt.registerForeignSite(site(), f.key).isOk());
    ASSERT_EQ(callInt(page.code), idOf(f.targets[1]));
  }
  // A refused update wrote nothing: the key, its arena site and its trampoline are unchanged.
  void expectNothingWritten() {
    EXPECT_EQ(f.rt.target(f.key).value(), f.targets[1]);
    EXPECT_EQ(caller(), idOf(f.targets[1])) << "the key's arena site was rewritten by a refused update";
    EXPECT_EQ(callInt(f.rt.trampoline(f.key).value()), idOf(f.targets[1]));
  }
  // Once the site is unregistered the key updates again.
  void expectRecovers() {
    ASSERT_TRUE(f.rt.unregisterForeignSite(site()).isOk());
    ASSERT_TRUE(f.rt.update(f.key, f.targets[3]).isOk());
    EXPECT_EQ(caller(), idOf(f.targets[3]));
  }
};

TEST(ForeignSiteChecks, UpdateRefusesASiteWhoseMappingBecameUnwritable) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Registered r;
  r.setUp();
  std::vector<uint8_t> copy(r.page.code, r.page.code + 4096);
  ASSERT_TRUE(mapSharedCopy(r.page.code, copy.data(), true));  // same bytes, shared now
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, hex(r.site()));
  r.expectNothingWritten();
  EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[1])) << "the foreign site was half written";
  KeyUpdate batch[] = {{r.f.key, r.f.targets[2]}};
  EXPECT_STATUS(r.f.rt.updateBatch(batch), Error::kUnsupportedSite, "cannot be written");
  r.expectNothingWritten();
  r.expectRecovers();
}

TEST(ForeignSiteChecks, UpdateRefusesASiteWhoseCodeWasUnmapped) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Registered r;
  r.setUp();
  ASSERT_EQ(munmap(r.page.code, 4096), 0);  // dlclose
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, hex(r.site()));
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, "no longer mapped");
  r.expectNothingWritten();
  Result<SiteInfo> info = r.f.rt.site(r.site());  // reads through /proc/self/mem: no fault
  EXPECT_TRUE(info.isOk());
  r.expectRecovers();
  // The page is gone; map one back so ForeignPage's munmap stays harmless.
  void* p = mmap(r.page.code, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != r.page.code) r.page.code = nullptr;
}

TEST(ForeignSiteChecks, UpdateRefusesASiteWhoseBytesChanged) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Registered r;
  r.setUp();
  ASSERT_EQ(mprotect(r.page.code, 4096, PROT_READ | PROT_WRITE), 0);
  r.site()[1] ^= 0x10;  // someone else rewrote the call
  uint8_t changed[5];
  std::memcpy(changed, r.site(), 5);
  ASSERT_EQ(mprotect(r.page.code, 4096, PROT_READ | PROT_EXEC), 0);
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, "not the call patchcall last wrote");
  r.expectNothingWritten();
  EXPECT_EQ(std::memcmp(changed, r.site(), 5), 0) << "the changed bytes were overwritten";
  r.expectRecovers();
}

// A write the kernel refuses after the probe passed (the mapping changed in between): the
// site is never left torn. x86-64 (breakpoint protocol): failing the rel32, the old call is put
// back whole; failing the final E8, the site stays int3 and its trap entry stays, so calls
// still reach the new target. aarch64 (one store of the whole BL): the old BL stays.
TEST(ForeignSiteChecks, AWriteRefusedAfterTheProbeNeverLeavesATornCall) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  struct Reset {
    ~Reset() { testing::setForeignWriteFailure(-1); }
  } reset;
  Registered r;
  r.setUp();
  if (!test::hasToggleAndBreakpointForms()) {
    uint8_t before[4];
    std::memcpy(before, r.site(), 4);
    testing::setForeignWriteFailure(0);  // refuse the one store
    EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, "foreign site " + hex(r.site()));
    EXPECT_EQ(std::memcmp(before, r.site(), 4), 0) << "a refused store changed the foreign call";
    EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[1])) << "the foreign site must keep its whole old call";
    EXPECT_EQ(r.caller(), idOf(r.f.targets[2])) << "the key's other sites are retargeted";
    ASSERT_TRUE(r.f.rt.update(r.f.key, r.f.targets[3]).isOk()) << "the old call passes the next probe";
    EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[3]));
    EXPECT_TRUE(r.f.rt.unregisterForeignSite(r.site()).isOk());
    return;
  }
  testing::setForeignWriteFailure(1);  // a round writes int3, rel32, E8: refuse the rel32
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[2]).status(), Error::kUnsupportedSite, "the rel32 of foreign site " + hex(r.site()));
  EXPECT_EQ(r.site()[0], 0xE8);
  EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[1])) << "the foreign site must keep its whole old call";
  EXPECT_EQ(r.caller(), idOf(r.f.targets[2])) << "the key's other sites are retargeted";
  EXPECT_EQ(r.f.rt.target(r.f.key).value(), r.f.targets[2]);
  ASSERT_TRUE(r.f.rt.update(r.f.key, r.f.targets[3]).isOk()) << "the restored call passes the next probe";
  EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[3]));

  testing::setForeignWriteFailure(2);  // refuse the final E8
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[0]).status(), Error::kUnsupportedSite, "the final E8");
  EXPECT_EQ(r.site()[0], 0xCC);
  EXPECT_EQ(callInt(r.page.code), idOf(r.f.targets[0])) << "the kept trap entry emulates the new call";
  EXPECT_STATUS(r.f.rt.update(r.f.key, r.f.targets[1]).status(), Error::kUnsupportedSite, "not the call patchcall last wrote");
  EXPECT_TRUE(r.f.rt.unregisterForeignSite(r.site()).isOk());
}

// ---- registration vs concurrent updates -----------------------------------------------------

// The registration used to read the key's target, drop the text mutex and update the key to
// that value: an update in between was silently reverted.
TEST(ForeignSiteChecks, RegistrationNeverChangesTheKeysTarget) {
  PATCHCALL_SKIP_UNLESS_FOREIGN_SITES();
  Fixture f = Fixture::make();
  ForeignPage pages[] = {ForeignPage{mapForeignCode(f.rt.arenaInfo().rxBase, f.targets[0])},
                         ForeignPage{mapForeignCode(f.rt.arenaInfo().rxBase, f.targets[0])}};
  ASSERT_NE(pages[0].code, nullptr);
  ASSERT_NE(pages[1].code, nullptr);
  ForeignPage& page = pages[0];
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> registrations{0};
  auto registrar = [&](uint8_t* site) {
    while (!stop.load()) {
      if (f.rt.registerForeignSite(site, f.key).isOk()) ++registrations;
      (void)f.rt.unregisterForeignSite(site);
    }
  };
  std::thread registrars[] = {std::thread(registrar, pages[0].code + 4), std::thread(registrar, pages[1].code + 4)};
  uint64_t updates = 0, reverted = 0;
  const void* last = f.targets[1];
  auto end = Clock::now() + std::chrono::milliseconds(1500);
  while (Clock::now() < end || registrations.load() < 50) {
    const void* next = f.targets[1 + ((updates + 1) % 3)];  // never the current one
    Result<const void*> previous = f.rt.update(f.key, next);
    ASSERT_TRUE(previous.isOk()) << previous.status().toString();
    if (*previous != last) ++reverted;  // someone else changed the key
    last = next;
    ++updates;
    if (Clock::now() > end + std::chrono::seconds(20)) break;
  }
  stop = true;
  for (std::thread& t : registrars) t.join();
  std::fprintf(stderr, "%lu updates, %lu registrations, %lu updates found the key changed behind them\n",
               static_cast<unsigned long>(updates), static_cast<unsigned long>(registrations.load()),
               static_cast<unsigned long>(reverted));
  EXPECT_GE(registrations.load(), 50u);
  EXPECT_EQ(reverted, 0u) << "a registration changed the key's target";
  EXPECT_EQ(f.rt.target(f.key).value(), last);
  ASSERT_TRUE(f.rt.registerForeignSite(page.code + 4, f.key).isOk());
  EXPECT_EQ(callInt(page.code), idOf(last));
}

}  // namespace
}  // namespace patchcall

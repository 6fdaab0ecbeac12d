// Blobs installed with CodeInfo through the public API: a declared frame layout is checked
// (refused code installs nothing), registered with the unwinder (a C++ exception from a
// target reached through a site crosses the JIT frame; backtrace() includes it) and with
// gdb's JIT interface, and both registrations end when the blob is freed. Also: the
// introspection snapshots and jit::install with a name.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "frame_asm.h"
#include "observe/gdb_jit.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "site_code.h"

// libgcc's FDE lookup (unwind-dw2-fde.h): what the unwinder finds for a pc.
struct dwarf_eh_bases {
  void* tbase;
  void* dbase;
  void* func;
};
extern "C" const void* _Unwind_Find_FDE(void* pc, dwarf_eh_bases* bases);

using namespace patchcall;

using namespace observe_test;

namespace {

__attribute__((noinline)) void quietTarget(int) {}

bool fdeFor(uintptr_t pc) {
  dwarf_eh_bases bases{};
  return _Unwind_Find_FDE(reinterpret_cast<void*>(pc), &bases) != nullptr;
}

// gdb's list: whether an image holds `name` in its string table.
bool gdbListsName(const std::string& name) {
  for (const jit_code_entry* e = __jit_debug_descriptor.first_entry; e != nullptr; e = e->next_entry) {
    std::string_view image(e->symfile_addr, e->symfile_size);
    if (image.find(std::string(name) + '\0') != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

TEST(CodeInfo, AFrameLayoutThatDoesNotMatchTheBytesIsRefused) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  const std::vector<uint8_t> noPrologue = siteCodeWithNopAt(0);  // nop instead of push rbp / stp
  Result<Blob> b = rt->installCode(noPrologue, {}, CodeInfo{"bad", {}, FrameLayout::kFramePointer});
  EXPECT_EQ(b.status().code(), Error::kInvalidArgument);
  const std::vector<uint8_t> noLeave = siteCodeWithNopAt(kEpilogueOffset);  // no leave / ldp before the ret
  b = rt->installCode(noLeave, {}, CodeInfo{"bad", {}, FrameLayout::kFramePointer});
  EXPECT_EQ(b.status().code(), Error::kInvalidArgument) << "kFramePointer checks the epilogue";
  EXPECT_TRUE(rt->installCode(noLeave, {}, CodeInfo{"ok", {}, FrameLayout::kFramePointerAnyEpilogue}).isOk())
      << "kFramePointerAnyEpilogue checks only the prologue";
  const NamedRange outside[] = {{8, 64, "past_the_end"}};
  EXPECT_EQ(rt->installCode(kSiteCode, {}, CodeInfo{"r", outside, FrameLayout::kNone}).status().code(), Error::kInvalidArgument);
  const NamedRange overlapping[] = {{0, 8, "a"}, {4, 8, "b"}};
  EXPECT_EQ(rt->installCode(kSiteCode, {}, CodeInfo{"r", overlapping, FrameLayout::kNone}).status().code(),
            Error::kInvalidArgument);
  EXPECT_EQ(rt->stats().blobs, 1u) << "refused code installs nothing";
}

TEST(CodeInfo, AnExceptionFromATargetCrossesABlobInstalledWithItsFrameLayout) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&throwingTarget), "thrower");
  ASSERT_TRUE(key.isOk());
  const SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> blob = rt->installCode(kSiteCode, {&site, 1}, CodeInfo{"jit_caller", {}, FrameLayout::kFramePointer});
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  const auto start = reinterpret_cast<uintptr_t>(blob->code);
  auto jit = reinterpret_cast<void (*)(int)>(blob->code);
  bool caught = false;
  try {
    jit(1);
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "through a site";
  }
  EXPECT_TRUE(caught);

  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&tracingTarget)).isOk());
  jit(0);
  auto at = std::find(tracedFrames().begin(), tracedFrames().end(), reinterpret_cast<void*>(start + kSiteReturnOffset));
  ASSERT_NE(at, tracedFrames().end()) << "backtrace() has no frame at the JIT code's return address";
  EXPECT_GT(tracedFrames().end() - at, 2) << "backtrace() stopped at the JIT frame";

  // Freed: the unwinder and gdb forget it before the bytes become the fill (int3, udf #0).
  EXPECT_TRUE(fdeFor(start + kSiteReturnOffset));
  EXPECT_TRUE(gdbListsName("jit_caller"));
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&quietTarget)).isOk());
  ASSERT_TRUE(rt->retire(*blob).isOk());
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_EQ(rt->stats().blobsFreed, 1u);
  EXPECT_FALSE(fdeFor(start + kSiteReturnOffset));
  EXPECT_FALSE(gdbListsName("jit_caller"));
}

TEST(CodeInfo, GdbImagesFollowOptionsGdbJit) {
  for (GdbJitMode mode : {GdbJitMode::kDescribed, GdbJitMode::kAll, GdbJitMode::kOff}) {
    Options o;
    o.gdbJit = mode;
    Result<Runtime> rt = Runtime::create(o);
    ASSERT_TRUE(rt.isOk());
    size_t before = 0;
    for (const jit_code_entry* e = __jit_debug_descriptor.first_entry; e != nullptr; e = e->next_entry) ++before;
    ASSERT_TRUE(rt->installCode(kSiteCode, {}, CodeInfo{"gdb_named", {}, FrameLayout::kNone}).isOk());
    ASSERT_TRUE(rt->installCode(kSiteCode, {}).isOk());
    size_t after = 0;
    for (const jit_code_entry* e = __jit_debug_descriptor.first_entry; e != nullptr; e = e->next_entry) ++after;
    size_t expected = mode == GdbJitMode::kAll ? 2 : mode == GdbJitMode::kDescribed ? 1 : 0;
    EXPECT_EQ(after - before, expected) << static_cast<int>(mode);
  }
}

TEST(CodeInfo, SnapshotsListKeysSitesAndBlobsWithTheirNames) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  Result<Key> a = rt->createKey(reinterpret_cast<const void*>(&quietTarget), "alpha");
  Result<Key> b = rt->createKey(reinterpret_cast<const void*>(&tracingTarget));
  ASSERT_TRUE(a.isOk() && b.isOk());
  const SiteSpec site{kSiteOffset, *a, SiteForm::kDirect};
  const NamedRange ranges[] = {{0, static_cast<uint32_t>(kSiteCode.size()), "whole"}};
  Result<Blob> blob = rt->installCode(kSiteCode, {&site, 1}, CodeInfo{"snap", ranges, FrameLayout::kFramePointer});
  ASSERT_TRUE(blob.isOk());

  Result<std::vector<KeyInfo>> keys = rt->keys();
  ASSERT_TRUE(keys.isOk());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "alpha");
  EXPECT_EQ((*keys)[0].sites, 1u);
  EXPECT_EQ((*keys)[0].target, reinterpret_cast<const void*>(&quietTarget));
  EXPECT_EQ((*keys)[0].trampoline, *rt->trampoline(*a));
  EXPECT_EQ((*keys)[1].name, "");
  EXPECT_EQ((*keys)[1].sites, 0u);
  KeyOptions noop;
  noop.nullIsNoop = true;
  Result<Key> c = rt->createKey(nullptr, "noop", noop);
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  keys = rt->keys();
  ASSERT_TRUE(keys.isOk());
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[2].target, nullptr) << "as target() reports a nullIsNoop key";
  ASSERT_TRUE(rt->destroyKey(*c).isOk());
  keys = rt->keys();
  ASSERT_TRUE(keys.isOk());

  Result<std::vector<SiteInfo>> sites = rt->sites();
  ASSERT_TRUE(sites.isOk());
  ASSERT_EQ(sites->size(), 1u);
  EXPECT_EQ((*sites)[0].address, static_cast<const uint8_t*>(blob->code) + kSiteOffset);
  EXPECT_EQ((*sites)[0].key, *a);
  EXPECT_EQ((*sites)[0].target, reinterpret_cast<const void*>(&quietTarget));

  Result<std::vector<BlobInfo>> blobs = rt->blobs();
  ASSERT_TRUE(blobs.isOk());
  ASSERT_EQ(blobs->size(), 1u);
  const BlobInfo& info = (*blobs)[0];
  EXPECT_EQ(info.blob.code, blob->code);
  EXPECT_EQ(info.name, "snap");
  ASSERT_EQ(info.ranges.size(), 1u);
  EXPECT_EQ(info.ranges[0].name, "whole");
  EXPECT_EQ(info.frameLayout, FrameLayout::kFramePointer);
  EXPECT_FALSE(info.retired);
  EXPECT_EQ(info.sites, 1u);

  // The stats agree with the snapshots.
  RuntimeStats s = rt->stats();
  EXPECT_EQ(s.keys, keys->size());
  EXPECT_EQ(s.sites, sites->size());
  EXPECT_EQ(s.blobs, blobs->size());

  ASSERT_TRUE(rt->update(*a, reinterpret_cast<const void*>(&tracingTarget)).isOk());
  ASSERT_TRUE(rt->retire(*blob).isOk());
  blobs = rt->blobs();
  ASSERT_TRUE(blobs.isOk());
  if (!blobs->empty()) {
    EXPECT_TRUE((*blobs)[0].retired);
  }
  ASSERT_TRUE(rt->barrier().isOk());
  EXPECT_TRUE(rt->blobs()->empty());
  EXPECT_TRUE(rt->sites()->empty());
  s = rt->stats();
  EXPECT_EQ(s.blobs, 0u);
  EXPECT_EQ(s.blobsFreed, 1u);
}

// Installs and frees on one thread while another reads stats(): blobs + blobsFreed is
// exactly the number of installs made so far (both are read in one critical section).
TEST(CodeInfo, StatsAreOneSnapshot) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  std::atomic<bool> done{false};
  std::atomic<uint64_t> installed{0};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      Result<Blob> b = rt->installCode(kSiteCode, {});
      if (!b) break;
      installed.fetch_add(1);
      (void)rt->retire(*b);
    }
    (void)rt->barrier();
    done = true;
  });
  uint64_t bad = 0;
  while (!done.load()) {
    uint64_t before = installed.load();
    RuntimeStats s = rt->stats();
    uint64_t after = installed.load();
    if (s.blobs + s.blobsFreed < before || s.blobs + s.blobsFreed > after + 1) ++bad;
  }
  writer.join();
  EXPECT_EQ(bad, 0u);
  RuntimeStats s = rt->stats();
  EXPECT_EQ(s.blobs + s.blobsFreed, installed.load());
}

TEST(CodeInfo, JitInstallTakesAName) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  jit::Assembler a(*rt);
  emitFramePrologue(a);
  emitFrameEpilogue(a);
  Result<Blob> blob = jit::install(a, "from_jit");
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  EXPECT_EQ((*rt->blobs())[0].name, "from_jit");
  jit::Assembler b(*rt);
  emitFramePrologue(b);
  ASSERT_TRUE(jit::emitSafepointPoll(b).isOk());
  emitFrameEpilogue(b);
  blob = jit::install(b, CodeInfo{"polled", {}, FrameLayout::kFramePointerAnyEpilogue});
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  EXPECT_EQ((*rt->blobs())[1].frameLayout, FrameLayout::kFramePointerAnyEpilogue);
}

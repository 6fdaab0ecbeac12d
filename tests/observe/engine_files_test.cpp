// The engine writes the perf map and jitdump: after installs, retirements and updates, each
// file's records are checked against what the registry says is installed (Runtime::keys,
// blobs), and a file that cannot be written costs one diagnostic, not the install.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "observe/jitdump.h"
#include "patchcall/runtime.h"
#include "site_code.h"
#include "temp_dir.h"

using namespace patchcall;

namespace {

extern "C" __attribute__((noinline)) int filesTargetA(int x) { return x + 1; }
extern "C" __attribute__((noinline)) int filesTargetB(int x) { return x + 2; }

using observe_test::kSiteOffset;
const std::vector<uint8_t>& kCode = observe_test::kSiteCode;

struct MapLine {
  uintptr_t start;
  size_t size;
};

// name -> the last line for it (perf: a later line for the same address wins).
std::multimap<std::string, MapLine> readPerfMap(pid_t pid) {
  std::multimap<std::string, MapLine> out;
  std::ifstream in("/tmp/perf-" + std::to_string(pid) + ".map");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string start, size, name;
    s >> start >> size;
    std::getline(s >> std::ws, name);
    out.emplace(name, MapLine{std::stoul(start, nullptr, 16), std::stoul(size, nullptr, 16)});
  }
  return out;
}

struct DumpLoad {
  std::string name;
  uintptr_t addr;
  std::vector<uint8_t> bytes;
};

std::vector<DumpLoad> readJitDump(const std::string& path) {
  std::vector<DumpLoad> out;
  std::ifstream in(path, std::ios::binary);
  std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() < sizeof(observe::jitdump::FileHeader)) return out;
  size_t at = sizeof(observe::jitdump::FileHeader);
  while (at + sizeof(observe::jitdump::RecordPrefix) <= all.size()) {
    observe::jitdump::RecordPrefix p;
    std::memcpy(&p, all.data() + at, sizeof p);
    if (p.totalSize == 0 || at + p.totalSize > all.size()) break;
    if (p.id == observe::jitdump::kCodeLoad) {
      observe::jitdump::CodeLoad r;
      std::memcpy(&r, all.data() + at, sizeof r);
      const char* name = all.data() + at + sizeof r;
      DumpLoad d{name, r.codeAddr, {}};
      const char* code = name + d.name.size() + 1;
      d.bytes.assign(code, code + r.codeSize);
      out.push_back(std::move(d));
    }
    at += p.totalSize;
  }
  return out;
}

// What the site in `code` (the bytes of a blob at `start`) calls: its call's destination, or the
// target of the veneer it calls (aarch64, for a target beyond BL's reach from the arena).
uintptr_t siteCallsIn(const Runtime& rt, uintptr_t start, const std::vector<uint8_t>& code) {
  const uintptr_t lands = arch::callDestination(start + kSiteOffset, code.data() + kSiteOffset);
  const ArenaInfo arena = rt.arenaInfo();
  const auto base = reinterpret_cast<uintptr_t>(arena.rxBase);
  return lands >= base && lands < base + arena.size ? arch::veneerTarget(lands) : lands;
}

}  // namespace

TEST(EngineFiles, PerfMapAndJitDumpFollowTheRegistry) {
  observe_test::TempDir dir;
  Options o;
  o.perfMap = true;
  o.jitDump = true;
  o.jitDumpDirectory = dir;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&filesTargetA), "answer");
  ASSERT_TRUE(key.isOk());
  const SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> fib = rt->installCode(kCode, {&site, 1}, CodeInfo{"fib", {}, FrameLayout::kFramePointer});
  ASSERT_TRUE(fib.isOk()) << fib.status().toString();
  std::vector<uint8_t> two(kCode);
  two.insert(two.end(), kCode.begin(), kCode.end());
  const NamedRange ranges[] = {{static_cast<uint32_t>(kCode.size()), static_cast<uint32_t>(kCode.size()), "second"},
                               {0, static_cast<uint32_t>(kCode.size()), "first"}};
  Result<Blob> pair = rt->installCode(two, {}, CodeInfo{"pair", ranges, FrameLayout::kFramePointer});
  ASSERT_TRUE(pair.isOk()) << pair.status().toString();
  Result<Blob> anonymous = rt->installCode(kCode, {});
  ASSERT_TRUE(anonymous.isOk());

  // The perf map holds a line for each blob (or named range), the trampoline and the stub.
  auto map = readPerfMap(getpid());
  Result<std::vector<BlobInfo>> blobs = rt->blobs();
  ASSERT_TRUE(blobs.isOk());
  ASSERT_EQ(blobs->size(), 3u);
  for (const BlobInfo& b : *blobs) {
    auto start = reinterpret_cast<uintptr_t>(b.blob.code);
    if (b.ranges.empty()) {
      char fallback[32];
      std::snprintf(fallback, sizeof fallback, "jit_%lx", static_cast<unsigned long>(start));
      std::string name = b.name.empty() ? fallback : b.name;
      ASSERT_EQ(map.count(name), 1u) << name;
      EXPECT_EQ(map.find(name)->second.start, start);
      EXPECT_EQ(map.find(name)->second.size, b.blob.size);
    } else {
      EXPECT_EQ(map.count(b.name), 0u) << "a blob with ranges is named by its ranges";
      for (const BlobInfo::Range& r : b.ranges) {
        ASSERT_EQ(map.count(r.name), 1u) << r.name;
        EXPECT_EQ(map.find(r.name)->second.start, start + r.offset);
        EXPECT_EQ(map.find(r.name)->second.size, r.size);
      }
    }
  }
  Result<std::vector<KeyInfo>> keys = rt->keys();
  ASSERT_TRUE(keys.isOk());
  ASSERT_EQ(keys->size(), 1u);
  ASSERT_EQ(map.count("trampoline:answer"), 1u);
  EXPECT_EQ(map.find("trampoline:answer")->second.start, reinterpret_cast<uintptr_t>((*keys)[0].trampoline));
  ASSERT_EQ(map.count("patchcall_safepoint_stub"), 1u);
  EXPECT_EQ(map.find("patchcall_safepoint_stub")->second.start, reinterpret_cast<uintptr_t>(rt->safepointStub()));
  ASSERT_EQ(map.count("patchcall_noop"), 1u);
  EXPECT_EQ(map.find("patchcall_noop")->second.start, reinterpret_cast<uintptr_t>(rt->noopTarget()));
  ASSERT_EQ(map.count("patchcall_return_zero"), 1u);
  EXPECT_EQ(map.find("patchcall_return_zero")->second.start, reinterpret_cast<uintptr_t>(rt->returnZeroTarget()));

  // jitdump: the same loads, with the installed bytes.
  const std::string dumpPath = dir + ("/jit-" + std::to_string(getpid()) + ".dump").c_str();
  std::vector<DumpLoad> loads = readJitDump(dumpPath);
  auto count = [&](const std::string& name) {
    size_t n = 0;
    for (const DumpLoad& d : loads) n += d.name == name;
    return n;
  };
  EXPECT_EQ(count("fib"), 1u);
  EXPECT_EQ(count("first"), 1u);
  EXPECT_EQ(count("second"), 1u);
  EXPECT_EQ(count("trampoline:answer"), 1u);
  for (const DumpLoad& d : loads) {
    if (d.name != "fib") continue;
    EXPECT_EQ(d.addr, reinterpret_cast<uintptr_t>(fib->code));
    EXPECT_EQ(0, std::memcmp(d.bytes.data(), fib->code, d.bytes.size()));
  }

  // An update: one new load of the blob it touched (and of no other), with the new call.
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&filesTargetB)).isOk());
  loads = readJitDump(dumpPath);
  ASSERT_EQ(count("fib"), 2u);
  EXPECT_EQ(count("first"), 1u);
  const DumpLoad& after = [&]() -> const DumpLoad& {
    for (size_t i = loads.size(); i-- > 0;) {
      if (loads[i].name == "fib") return loads[i];
    }
    return loads[0];
  }();
  const auto fibStart = reinterpret_cast<uintptr_t>(fib->code);
  EXPECT_EQ(siteCallsIn(*rt, fibStart, after.bytes), reinterpret_cast<uintptr_t>(&filesTargetB));

  // A batch of two updates of the same key's site still makes one load per blob.
  Result<Key> key2 = rt->createKey(reinterpret_cast<const void*>(&filesTargetA), "other");
  ASSERT_TRUE(key2.isOk());
  const KeyUpdate batch[] = {{*key, reinterpret_cast<const void*>(&filesTargetA)},
                             {*key2, reinterpret_cast<const void*>(&filesTargetB)}};
  ASSERT_TRUE(rt->updateBatch(batch).isOk());
  loads = readJitDump(dumpPath);
  EXPECT_EQ(count("fib"), 3u);

  // Retired and freed: the registry forgets it; the map keeps its line (perf has no unload).
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&filesTargetB)).isOk());
  ASSERT_TRUE(rt->retire(*pair).isOk());
  ASSERT_TRUE(rt->barrier().isOk());
  blobs = rt->blobs();
  ASSERT_TRUE(blobs.isOk());
  EXPECT_EQ(blobs->size(), 2u);
  EXPECT_EQ(readPerfMap(getpid()).count("first"), 1u);
  std::remove(("/tmp/perf-" + std::to_string(getpid()) + ".map").c_str());
}

TEST(EngineFiles, AFailingFileCostsOneDiagnosticNotTheInstall) {
  std::vector<std::string> diagnostics;
  Options o;
  o.jitDump = true;
  o.jitDumpDirectory = "/nonexistent/patchcall";
  o.diagnosticSink = [&](const std::string& m) { diagnostics.push_back(m); };
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&filesTargetA), "k");
  ASSERT_TRUE(key.isOk());
  const SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rt->installCode(kCode, {&site, 1}, CodeInfo{"f", {}, FrameLayout::kNone}).isOk());
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&filesTargetB)).isOk());
  size_t jitdump = 0;
  for (const std::string& m : diagnostics) jitdump += m.find("jitdump") != std::string::npos;
  EXPECT_EQ(jitdump, 1u);
}

TEST(EngineFiles, TheEnvironmentTurnsThePerfMapOn) {
  const std::string path = "/tmp/perf-" + std::to_string(getpid()) + ".map";
  std::remove(path.c_str());
  setenv("PATCHCALL_PERF_MAP", "1", 1);
  Result<Runtime> rt = Runtime::create();
  unsetenv("PATCHCALL_PERF_MAP");
  ASSERT_TRUE(rt.isOk());
  ASSERT_TRUE(rt->installCode(kCode, {}, CodeInfo{"from_env", {}, FrameLayout::kNone}).isOk());
  EXPECT_EQ(readPerfMap(getpid()).count("from_env"), 1u);
  std::remove(path.c_str());
}

// A fork() child writes its own perf-<child pid>.map, with a line for the code it inherited.
TEST(EngineFiles, AForkChildAnnouncesTheCodeItInherited) {
  Options o;
  o.perfMap = true;
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk());
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&filesTargetA), "inherited_key");
  ASSERT_TRUE(key.isOk());
  const SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> blob = rt->installCode(kCode, {&site, 1}, CodeInfo{"inherited", {}, FrameLayout::kFramePointer});
  ASSERT_TRUE(blob.isOk());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);  // the atfork child handler has written the child's map
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  auto map = readPerfMap(child);
  ASSERT_EQ(map.count("inherited"), 1u);
  EXPECT_EQ(map.find("inherited")->second.start, reinterpret_cast<uintptr_t>(blob->code));
  EXPECT_EQ(map.count("trampoline:inherited_key"), 1u);
  EXPECT_EQ(map.count("patchcall_safepoint_stub"), 1u);
  std::remove(("/tmp/perf-" + std::to_string(child) + ".map").c_str());
  std::remove(("/tmp/perf-" + std::to_string(getpid()) + ".map").c_str());
}

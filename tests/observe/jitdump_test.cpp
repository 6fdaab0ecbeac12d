// JitDump: the file parses back (header, record sizes, names, bytes, code indexes), the
// marker is an executable mapping of the file, a retarget adds a load of the current bytes.
#include "observe/jitdump.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <csignal>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "elf_machine.h"
#include "temp_dir.h"

using patchcall::observe::CodeEvent;
using patchcall::observe::JitDump;
namespace jd = patchcall::observe::jitdump;

namespace {

struct Load {
  jd::CodeLoad head;
  std::string name;
  std::vector<uint8_t> code;
};

struct Dump {
  jd::FileHeader header{};
  std::vector<Load> loads;
  int closes = 0;
  bool wellFormed = false;  // every record's total_size ended exactly at the file's end
  std::vector<uint64_t> timestamps;
};

// A reader written from tools/perf/util/jitdump.h, independent of the writer's structs'
// sizes: fields are read at their documented offsets.
Dump readDump(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> f((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Dump d;
  auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, &f[at], 4); return v; };
  auto u64 = [&](size_t at) { uint64_t v; std::memcpy(&v, &f[at], 8); return v; };
  if (f.size() < 40) return d;
  d.header = {u32(0), u32(4), u32(8), u32(12), u32(16), u32(20), u64(24), u64(32)};
  size_t at = d.header.totalSize;
  while (at + 16 <= f.size()) {
    const uint32_t id = u32(at), total = u32(at + 4);
    if (total < 16 || at + total > f.size()) return d;
    d.timestamps.push_back(u64(at + 8));
    if (id == jd::kCodeLoad) {
      Load l{};
      l.head.prefix = {id, total, u64(at + 8)};
      l.head.pid = u32(at + 16);
      l.head.tid = u32(at + 20);
      l.head.vma = u64(at + 24);
      l.head.codeAddr = u64(at + 32);
      l.head.codeSize = u64(at + 40);
      l.head.codeIndex = u64(at + 48);
      const char* name = reinterpret_cast<const char*>(&f[at + 56]);
      l.name = std::string(name, strnlen(name, total - 56));
      const size_t codeAt = at + 56 + l.name.size() + 1;
      if (codeAt + l.head.codeSize != at + total) return d;  // total_size must cover exactly these
      l.code.assign(f.begin() + static_cast<long>(codeAt), f.begin() + static_cast<long>(at + total));
      d.loads.push_back(std::move(l));
    } else if (id == jd::kCodeClose) {
      ++d.closes;
    }
    at += total;
  }
  d.wellFormed = at == f.size();
  return d;
}

uint64_t nowMono() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}


// The marker: an executable mapping of exactly our file, as perf sees it in its MMAP events.
bool markerMapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() > path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0 &&
        line.find(" r-xp ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

TEST(JitDump, FileParsesBackWithHeaderRecordsAndBytes) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  const uint64_t before = nowMono();
  std::vector<uint8_t> fib(100), stub(16);
  for (size_t i = 0; i < fib.size(); ++i) fib[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < stub.size(); ++i) stub[i] = static_cast<uint8_t>(0xC0 + i);
  std::string path;
  {
    JitDump dump;
    ASSERT_TRUE(dump.open(dir).isOk());
    path = dump.path();
    EXPECT_EQ(path, dir + "/jit-" + std::to_string(getpid()) + ".dump");
    EXPECT_TRUE(markerMapped(path));
    ASSERT_TRUE(dump.codeLoaded({0x7f0000010000, fib.size(), "fib", fib.data()}).isOk());
    ASSERT_TRUE(dump.codeLoaded({0x7f0000020000, stub.size(), "safepoint_stub", stub.data()}).isOk());
    // A retargeted site inside fib: the whole blob again, with its current bytes.
    fib[40] = 0xAB;
    ASSERT_TRUE(dump.codeChanged(0x7f0000010000, fib.size(), "fib", fib.data()).isOk());
    EXPECT_EQ(dump.nextCodeIndex(), 3u);
  }
  EXPECT_FALSE(markerMapped(path));  // close() unmaps it
  const uint64_t after = nowMono();

  const Dump d = readDump(path);
  EXPECT_TRUE(d.wellFormed);
  EXPECT_EQ(d.header.magic, 0x4A695444u);
  EXPECT_EQ(d.header.version, 1u);
  EXPECT_EQ(d.header.totalSize, 40u);
  EXPECT_EQ(d.header.elfMach, observe_test::kElfMachine);
  EXPECT_EQ(d.header.pid, static_cast<uint32_t>(getpid()));
  EXPECT_GE(d.header.timestamp, before);
  EXPECT_LE(d.header.timestamp, after);
  EXPECT_EQ(d.closes, 1);
  for (size_t i = 1; i < d.timestamps.size(); ++i) EXPECT_LE(d.timestamps[i - 1], d.timestamps[i]);
  ASSERT_EQ(d.loads.size(), 3u);
  const Load& a = d.loads[0];
  EXPECT_EQ(a.name, "fib");
  EXPECT_EQ(a.head.prefix.totalSize, 56u + 4u + fib.size());
  EXPECT_EQ(a.head.pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(a.head.tid, static_cast<uint32_t>(gettid()));
  EXPECT_EQ(a.head.vma, 0x7f0000010000u);
  EXPECT_EQ(a.head.codeAddr, 0x7f0000010000u);
  EXPECT_EQ(a.head.codeSize, fib.size());
  EXPECT_EQ(a.head.codeIndex, 0u);
  EXPECT_EQ(a.code[40], static_cast<uint8_t>(40 * 7));
  EXPECT_GE(a.head.prefix.timestamp, d.header.timestamp);
  EXPECT_EQ(d.loads[1].name, "safepoint_stub");
  EXPECT_EQ(d.loads[1].code, stub);
  EXPECT_EQ(d.loads[1].head.codeIndex, 1u);
  EXPECT_EQ(d.loads[2].name, "fib");
  EXPECT_EQ(d.loads[2].head.codeIndex, 2u);
  EXPECT_EQ(d.loads[2].code, fib);  // the changed byte
}

TEST(JitDump, OpenFailureLeavesItDisabled) {
  JitDump dump;
  const patchcall::Status s = dump.open("/nonexistent-dir-for-patchcall");
  EXPECT_EQ(s.code(), patchcall::Error::kSystemError);
  EXPECT_FALSE(dump.enabled());
  const uint8_t b[4] = {};
  EXPECT_TRUE(dump.codeLoaded({0x1000, 4, "x", b}).isOk());
}

// A write that fails after open (file size limit: EFBIG) disables the dump with one Status
// and unmaps the marker; run in a child so the limit does not outlive the test.
TEST(JitDump, AFailedRecordDisablesTheDumpWithOneDiagnostic) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{100, 100};
    setrlimit(RLIMIT_FSIZE, &limit);
    JitDump dump;
    if (!dump.open(dir).isOk()) _exit(2);
    std::vector<uint8_t> code(200, 0x90);
    const patchcall::Status first = dump.codeLoaded({0x1000, code.size(), "big", code.data()});
    if (first.code() != patchcall::Error::kSystemError || first.message().find("File too large") == std::string::npos) _exit(3);
    if (dump.enabled() || markerMapped(dump.path())) _exit(4);
    if (!dump.codeLoaded({0x2000, 4, "small", code.data()}).isOk()) _exit(5);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const Dump d = readDump(dir + "/jit-" + std::to_string(child) + ".dump");
  EXPECT_EQ(d.header.magic, jd::kMagic);
  EXPECT_TRUE(d.loads.empty());
}

TEST(JitDump, ForkChildStartsItsOwnDumpAndMarker) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  const uint8_t code[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  JitDump dump;
  ASSERT_TRUE(dump.open(dir).isOk());
  const CodeEvent inherited{0x40000, sizeof code, "inherited", code};
  ASSERT_TRUE(dump.codeLoaded(inherited).isOk());
  const std::string parentPath = dump.path();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    bool ok = dump.afterForkInChild(getppid(), {&inherited, 1}).isOk();
    ok = ok && dump.path() == dir + "/jit-" + std::to_string(getpid()) + ".dump";
    ok = ok && markerMapped(dump.path()) && !markerMapped(parentPath);
    ok = ok && dump.codeLoaded({0x50000, sizeof code, "child_only", code}).isOk();
    dump.close();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(markerMapped(parentPath));
  dump.close();
  const Dump mine = readDump(parentPath);
  ASSERT_EQ(mine.loads.size(), 1u);
  EXPECT_EQ(mine.closes, 1);  // the child did not write into the parent's file
  const Dump childs = readDump(dir + "/jit-" + std::to_string(child) + ".dump");
  EXPECT_EQ(childs.header.pid, static_cast<uint32_t>(child));
  ASSERT_EQ(childs.loads.size(), 2u);
  EXPECT_EQ(childs.loads[0].name, "inherited");
  EXPECT_EQ(childs.loads[0].head.pid, static_cast<uint32_t>(child));
  EXPECT_EQ(childs.loads[1].name, "child_only");
}

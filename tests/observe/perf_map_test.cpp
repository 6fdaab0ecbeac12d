// PerfMap: the lines parse back to the events, failures disable it once, a fork child gets
// its own file with the inherited code.
#include "observe/perf_map.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>


#include "temp_dir.h"

using patchcall::Error;
using patchcall::observe::CodeEvent;
using patchcall::observe::PerfMap;

namespace {

struct Line {
  uintptr_t start;
  size_t size;
  std::string name;
};

std::vector<Line> readMap(const std::string& path) {
  std::vector<Line> out;
  std::ifstream in(path);
  std::string text;
  while (std::getline(in, text)) {
    Line l{};
    std::istringstream ls(text);
    std::string start, size;
    ls >> start >> size;
    l.start = std::stoul(start, nullptr, 16);
    l.size = std::stoul(size, nullptr, 16);
    std::getline(ls >> std::ws, l.name);
    out.push_back(l);
  }
  return out;
}


}  // namespace

TEST(PerfMap, LinesParseBackToTheEvents) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  PerfMap map;
  EXPECT_FALSE(map.enabled());
  ASSERT_TRUE(map.open(dir).isOk());
  EXPECT_EQ(map.path(), dir + "/perf-" + std::to_string(getpid()) + ".map");
  const std::vector<CodeEvent> events = {{0x7f0000001000, 0x40, "fib", nullptr},
                                         {0x7f0000001040, 0x1234, "tier up: fib (baseline)", nullptr},
                                         {0x7f0000002000, 16, "bad\nname", nullptr},
                                         {0x7f0000003000, 16, "", nullptr}};
  for (const CodeEvent& e : events) ASSERT_TRUE(map.codeLoaded(e).isOk());
  const std::vector<Line> lines = readMap(map.path());
  ASSERT_EQ(lines.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(lines[i].start, events[i].start) << i;
    EXPECT_EQ(lines[i].size, events[i].size) << i;
  }
  EXPECT_EQ(lines[0].name, "fib");
  EXPECT_EQ(lines[1].name, "tier up: fib (baseline)");
  EXPECT_EQ(lines[2].name, "bad?name");  // one event, one line
  EXPECT_EQ(lines[3].name, "jit_7f0000003000");
  std::ifstream raw(map.path());
  std::string first;
  std::getline(raw, first);
  EXPECT_EQ(first, "7f0000001000 40 fib");  // the exact format perf parses
}

TEST(PerfMap, OpenFailureLeavesItDisabled) {
  PerfMap map;
  const patchcall::Status s = map.open("/nonexistent-dir-for-patchcall");
  EXPECT_EQ(s.code(), Error::kSystemError);
  EXPECT_NE(s.message().find("perf map"), std::string::npos) << s.message();
  EXPECT_FALSE(map.enabled());
  EXPECT_TRUE(map.codeLoaded({0x1000, 16, "x", nullptr}).isOk());  // dropped, no second diagnostic
}

// The map file is a symlink to /dev/full: open succeeds, the first line fails (ENOSPC).
TEST(PerfMap, AFailedLineDisablesTheMapWithOneDiagnostic) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  ASSERT_EQ(symlink("/dev/full", (dir + "/perf-" + std::to_string(getpid()) + ".map").c_str()), 0);
  PerfMap map;
  ASSERT_TRUE(map.open(dir).isOk());
  const patchcall::Status first = map.codeLoaded({0x1000, 16, "a", nullptr});
  EXPECT_EQ(first.code(), Error::kSystemError);
  EXPECT_NE(first.message().find("No space left"), std::string::npos) << first.message();
  EXPECT_FALSE(map.enabled());
  EXPECT_TRUE(map.codeLoaded({0x2000, 16, "b", nullptr}).isOk());
}

// Descriptors of this process open on `path`.
static int descriptorsOf(const std::string& path) {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[4096] = {};
    const std::string fdPath = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t len = readlink(fdPath.c_str(), link, sizeof link - 1);
    if (len > 0 && path == link) ++n;
  }
  return n;
}

// A child that never calls afterForkInChild must not write into the parent's file.
TEST(PerfMap, ForkChildWithoutItsOwnFileWritesNothing) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  PerfMap map;
  ASSERT_TRUE(map.open(dir).isOk());
  ASSERT_TRUE(map.codeLoaded({0x1000, 16, "before_fork", nullptr}).isOk());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const bool ok = map.codeLoaded({0x2000, 16, "from_child", nullptr}).isOk() && !map.enabled();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::vector<Line> lines = readMap(map.path());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].name, "before_fork");
}

TEST(PerfMap, ForkChildWritesItsOwnFileWithTheInheritedCode) {
  const observe_test::TempDir tmp;
  const std::string& dir = tmp;
  PerfMap map;
  ASSERT_TRUE(map.open(dir).isOk());
  const CodeEvent parentCode{0x10000, 0x80, "inherited", nullptr};
  ASSERT_TRUE(map.codeLoaded(parentCode).isOk());
  const std::string parentPath = map.path();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    bool ok = descriptorsOf(parentPath) == 1;  // inherited
    ok = ok && map.afterForkInChild(getppid(), {&parentCode, 1}).isOk();
    ok = ok && descriptorsOf(parentPath) == 0;  // the parent's file is closed here
    ok = ok && map.codeLoaded({0x20000, 0x10, "child_only", nullptr}).isOk();
    ok = ok && map.path() == dir + "/perf-" + std::to_string(getpid()) + ".map";
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(map.codeLoaded({0x30000, 0x10, "parent_after_fork", nullptr}).isOk());

  const std::vector<Line> mine = readMap(parentPath);
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].name, "inherited");
  EXPECT_EQ(mine[1].name, "parent_after_fork");
  const std::vector<Line> childs = readMap(dir + "/perf-" + std::to_string(child) + ".map");
  ASSERT_EQ(childs.size(), 2u);
  EXPECT_EQ(childs[0].name, "inherited");
  EXPECT_EQ(childs[0].start, 0x10000u);
  EXPECT_EQ(childs[1].name, "child_only");
}

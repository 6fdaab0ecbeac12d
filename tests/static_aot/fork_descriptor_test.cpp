// fork() and the AOT registry's /proc/self/mem: the descriptor the parent opened names the
// parent's memory. The child's atfork handler closes it at once, so the child holds no
// handle on the parent's address space, and the child's first batch opens its own without
// closing a descriptor number the child may have reused since (a daemon that closes every
// descriptor after fork, then opens files).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

#include "patchcall/static_key.h"
#include "patchcall/static_module.h"

PATCHCALL_DEFINE_STATIC_KEY_FALSE(gForkDescriptorKey);

namespace {

__attribute__((noinline)) int forkDescriptorBranch() {
  if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&gForkDescriptorKey)) return 1;
  return 0;
}

std::string linkOf(int fd) {
  char path[64], target[PATH_MAX];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  return n < 0 ? std::string() : std::string(target, static_cast<size_t>(n));
}

// The lowest descriptor open on /proc/<pid>/mem, or -1.
int memDescriptorOf(pid_t pid) {
  const std::string mem = "/proc/" + std::to_string(pid) + "/mem";
  for (int fd = 0; fd < 1024; ++fd) {
    if (linkOf(fd) == mem) return fd;
  }
  return -1;
}

#define CHILD_EXPECT(cond, ...)              \
  do {                                       \
    if (!(cond)) {                           \
      std::fprintf(stderr, "child: ");      \
      std::fprintf(stderr, __VA_ARGS__);     \
      std::fprintf(stderr, "\n");           \
      return 1;                              \
    }                                        \
  } while (0)

int childBody(pid_t parent, int parentsFd) {
  CHILD_EXPECT(memDescriptorOf(parent) < 0, "descriptor %d still names the parent's memory (/proc/%d/mem)",
               memDescriptorOf(parent), static_cast<int>(parent));
  // The child reuses the number the parent's descriptor had, as a daemon closing every
  // descriptor and opening its own files would.
  int mine = open("/dev/null", O_RDONLY | O_CLOEXEC);
  CHILD_EXPECT(mine >= 0, "open /dev/null: %s", std::strerror(errno));
  if (mine != parentsFd) {
    CHILD_EXPECT(dup2(mine, parentsFd) == parentsFd, "dup2: %s", std::strerror(errno));
    close(mine);
  }
  CHILD_EXPECT(patchcall_static_key_enable(&gForkDescriptorKey) == PATCHCALL_OK, "enable in the child: %s",
               patchcall_last_error_message());
  CHILD_EXPECT(forkDescriptorBranch() == 1, "the child's branch did not follow its enable");
  CHILD_EXPECT(linkOf(parentsFd) == "/dev/null", "the child's descriptor %d was closed or replaced (now '%s')",
               parentsFd, linkOf(parentsFd).c_str());
  CHILD_EXPECT(memDescriptorOf(getpid()) >= 0, "the child's batch wrote without a /proc/self/mem of its own");
  return 0;
}

TEST(StaticAotFork, ChildClosesTheParentsProcSelfMemAndOpensItsOwn) {
  // A batch in the parent opens its descriptor.
  ASSERT_EQ(patchcall_static_key_enable(&gForkDescriptorKey), PATCHCALL_OK) << patchcall_last_error_message();
  ASSERT_EQ(patchcall_static_key_disable(&gForkDescriptorKey), PATCHCALL_OK) << patchcall_last_error_message();
  const int parentsFd = memDescriptorOf(getpid());
  ASSERT_GE(parentsFd, 0) << "the parent's batches opened no /proc/self/mem";
  const pid_t parent = getpid();
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) _exit(childBody(parent, parentsFd));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status << " (its messages above)";
  // The parent's key and descriptor are its own still.
  EXPECT_EQ(forkDescriptorBranch(), 0) << "the child's enable reached the parent";
  EXPECT_EQ(memDescriptorOf(getpid()), parentsFd);
  ASSERT_EQ(patchcall_static_key_enable(&gForkDescriptorKey), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(forkDescriptorBranch(), 1);
  ASSERT_EQ(patchcall_static_key_disable(&gForkDescriptorKey), PATCHCALL_OK) << patchcall_last_error_message();
}

}  // namespace

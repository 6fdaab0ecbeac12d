// Test helpers for fork(): run a body in a child and describe how it ended.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

// In a child, failures are printed and turned into a non-zero exit status.
#define CHILD_CHECK(cond, ...)                                \
  do {                                                        \
    if (!(cond)) {                                            \
      std::fprintf(stderr, "child %d: ", getpid());          \
      std::fprintf(stderr, __VA_ARGS__);                      \
      std::fprintf(stderr, " [%s:%d]\n", __FILE__, __LINE__); \
      return 1;                                               \
    }                                                         \
  } while (0)

namespace patchcall::test {

// Forks, runs `body` in the child and returns its wait status description ("exit 0" when it
// succeeded). The child never returns into gtest.
inline std::string waitDescribed(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return "waitpid failed";
  }
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "unknown status";
}

inline pid_t forkChild(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    std::fflush(stderr);
    _exit(body());
  }
  return pid;
}

inline std::string runInChild(const std::function<int()>& body) {
  pid_t pid = forkChild(body);
  if (pid < 0) return std::string("fork failed: ") + std::strerror(errno);
  return waitDescribed(pid);
}

}  // namespace patchcall::test

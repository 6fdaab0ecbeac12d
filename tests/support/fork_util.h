// Test helpers for fork(): run a body in a child and describe how it ended.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "patchcall/runtime.h"

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

// A registered thread that stays online and never passes a safepoint: it holds up the
// parent's grace periods, and does not exist in a child forked while it runs.
class StuckParentThread {
 public:
  explicit StuckParentThread(Runtime& rt) : thread_([this, &rt] {
    Result<ThreadScope> s = rt.registerThread("parent-only");
    registered_ = true;
    while (!stop_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }) {
    while (!registered_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StuckParentThread() {
    stop_ = true;
    thread_.join();
  }
  StuckParentThread(const StuckParentThread&) = delete;
  StuckParentThread& operator=(const StuckParentThread&) = delete;

 private:
  std::atomic<bool> registered_{false}, stop_{false};
  std::thread thread_;
};

}  // namespace patchcall::test

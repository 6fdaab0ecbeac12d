// Helpers for the fiber tests: stacks mapped by the test (optionally below a thread's pthread
// stack, with an unmapped hole above), and a child-process runner for scenarios that crash
// on code without stack registration.
#pragma once

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace patchcall::qtest {

// [base, base + size) readable and writable, with an unmapped page right above it: a scan
// that runs off the top of this stack faults instead of reading a neighbour.
class MappedStack {
 public:
  static constexpr size_t kPage = 4096;
  // below == 0: anywhere. Otherwise somewhere under that address (at least 16 MiB lower).
  explicit MappedStack(size_t size, uintptr_t below = 0) : size_(size) {
    for (uintptr_t gap = uintptr_t{16} << 20; below == 0 || gap < below / 2; gap *= 2) {
      void* hint = below == 0 ? nullptr : reinterpret_cast<void*>((below - gap - size - kPage) & ~(kPage - 1));
      int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | (below == 0 ? 0 : MAP_FIXED_NOREPLACE);
      void* p = mmap(hint, size + kPage, PROT_READ | PROT_WRITE, flags, -1, 0);
      if (p != MAP_FAILED && below != 0 && p != hint) {  // qemu-user takes NOREPLACE as a hint
        munmap(p, size + kPage);
        p = MAP_FAILED;
      }
      if (p != MAP_FAILED) {
        base_ = static_cast<uint8_t*>(p);
        munmap(base_ + size, kPage);  // the hole above
        return;
      }
      if (below == 0) return;
    }
  }
  ~MappedStack() {
    if (base_ != nullptr) munmap(base_, size_);
  }
  MappedStack(const MappedStack&) = delete;
  MappedStack& operator=(const MappedStack&) = delete;
  bool ok() const { return base_ != nullptr; }
  void* base() const { return base_; }
  size_t size() const { return size_; }
  uintptr_t hi() const { return reinterpret_cast<uintptr_t>(base_) + size_; }

 private:
  uint8_t* base_ = nullptr;
  size_t size_;
};

// The calling thread's pthread stack [lo, hi).
inline std::pair<uintptr_t, uintptr_t> pthreadStack() {
  pthread_attr_t attr;
  void* lo = nullptr;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &lo, &size);
    pthread_attr_destroy(&attr);
  }
  return {reinterpret_cast<uintptr_t>(lo), reinterpret_cast<uintptr_t>(lo) + size};
}

// For EXPECT_EXIT(exitWith(scenario()), ExitedWithCode(0), ""): a scenario returns "" on
// success or what went wrong; a crash shows up as a signal instead of exit code 0.
[[noreturn]] inline void exitWith(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "FAILED: %s\n", error.c_str());
  std::fflush(stderr);
  _exit(error.empty() ? 0 : 1);
}

}  // namespace patchcall::qtest

// patchcall — a futex word bumped as each of a series of events completes (a grace period, a
// publishing sync), and the callers sleeping until the next one: the followers of whoever
// leads it. Waits are bounded by the caller's deadline and sliced (10 ms), so a wakeup lost
// to a fork or a signal only delays a re-check.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include "fork_reset.h"

namespace patchcall::detail {

class CompletionEvent {
 public:
  // Read before checking the condition a wait() is for.
  uint32_t current() const noexcept { return word_.load(std::memory_order_acquire); }
  void announce() noexcept {
    word_.fetch_add(1, std::memory_order_seq_cst);
    // Dekker with wait() (followers_++ then FUTEX_WAIT checks the word): a follower not seen
    // here has not slept yet and will find the word changed. No system call without one.
    if (followers_.load(std::memory_order_seq_cst) != 0) futex(FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
  }
  // Sleeps while the word is still `seen`, until `until` and at most 10 ms (the caller then
  // re-checks its condition). False, without sleeping, once `until` has passed.
  bool wait(uint32_t seen, std::chrono::steady_clock::time_point until) noexcept {
    auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(10)))
                  .count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    followers_.fetch_add(1, std::memory_order_seq_cst);
    futex(FUTEX_WAIT_PRIVATE, seen, &ts);
    followers_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }
  // fork(), in the child: the parent's sleepers do not exist here.
  void afterForkInChild() noexcept { storeIfDifferent(followers_, 0); }

 private:
  long futex(int op, uint32_t val, const timespec* timeout) noexcept {
    return syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), op, val, timeout, nullptr, 0);
  }

  alignas(64) std::atomic<uint32_t> word_{0};
  std::atomic<uint32_t> followers_{0};  // callers asleep on word_
};

}  // namespace patchcall::detail

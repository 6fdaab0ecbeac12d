// patchcall — a FIFO (ticket) mutex for the text mutex.
//
// A JIT thread that installs and updates in a loop re-acquires the text mutex every few
// microseconds; with an unfair std::mutex the reclaimer and a toggle update returning from
// its grace-period wait could starve behind it indefinitely. Tickets hand the lock over in
// arrival order; waiters spin briefly, then sleep on a futex.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "arch/arch.h"

namespace patchcall::detail {

class FairMutex {
 public:
  void lock() noexcept {
    uint32_t ticket = next_.fetch_add(1, std::memory_order_relaxed);
    for (int spins = 0;; ++spins) {
      uint32_t serving = serving_.load(std::memory_order_acquire);
      if (serving == ticket) return;
      if (spins < 128) {
        arch::cpuRelax();
        continue;
      }
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&serving_), FUTEX_WAIT_PRIVATE, serving, nullptr, nullptr, 0);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  bool try_lock() noexcept {
    uint32_t serving = serving_.load(std::memory_order_acquire);
    uint32_t expected = serving;
    return next_.compare_exchange_strong(expected, serving + 1, std::memory_order_acquire);
  }
  void unlock() noexcept {
    serving_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) {
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&serving_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
    }
  }

 private:
  std::atomic<uint32_t> next_{0};
  alignas(64) std::atomic<uint32_t> serving_{0};
  std::atomic<uint32_t> sleepers_{0};
};

}  // namespace patchcall::detail

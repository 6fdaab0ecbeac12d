// patchcall — what a fork child resets, written only where the parent left it different.
//
// Every page a child writes on its way to running is a copy-on-write fault (2-7 us on these
// VMs, BM_ForkChild's child_minflt counts them), so the child handlers store only what
// differs from the state they want: a lock or condition variable nobody used is left as it is.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>

// On the atfork handlers and what they call: their code on adjacent pages. A child maps the
// library's text as it first runs it (a fault per 64 KiB window, the kernel's fault-around),
// so handlers spread over the library paid one fault per file they touch. The linker
// gathers .text.hot.* ahead of the rest of .text.
#define PATCHCALL_FORK_PATH __attribute__((section(".text.hot.patchcall_fork")))

namespace patchcall::detail {

// Re-creates a std::mutex / timed_mutex / condition_variable the parent's other threads may
// have held or waited on. glibc's initial state of each is all zero bytes (the
// PTHREAD_*_INITIALIZERs), and an unused or released one goes back to it; any other bytes
// are re-created.
template <typename T>
void resetAfterFork(T& object) noexcept {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&object);
  for (size_t i = 0; i < sizeof(T); ++i) {
    if (bytes[i] != 0) {
      new (&object) T();
      return;
    }
  }
}

template <typename T, typename V>
void storeIfDifferent(std::atomic<T>& a, V value) noexcept {
  if (a.load(std::memory_order_relaxed) != static_cast<T>(value)) a.store(static_cast<T>(value), std::memory_order_relaxed);
}

template <typename T, typename V>
void storeIfDifferent(T& field, V value) noexcept {
  if (field != static_cast<T>(value)) field = static_cast<T>(value);
}

}  // namespace patchcall::detail

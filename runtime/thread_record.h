// patchcall — a registered thread's record: what grace periods read (its counter, its
// stacks) and how long it lives (three references: domain, exit hook, ThreadScope).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "metadata.h"
#include "patchcall/status.h"
#include "stacks.h"

namespace patchcall::detail {

class Quiescence;

// Lifetime: three references, each dropped once (releaseRecord): the domain's (unregisterThread,
// or ~Quiescence), the exit hook's (disarmed by an unregistration on the thread, or run at
// thread exit) and the ThreadScope's. So a scope that outlives its thread, or a hook that runs
// after the runtime is gone, never touches freed memory.
struct ThreadRecord {
  std::atomic<uint64_t> ctr{0};         // 0: offline; else the last counter acknowledged
  std::atomic<uint32_t> scanLock{0};    // held while someone scans this thread's stack
  std::atomic<uintptr_t> offlineSp{0};  // stack pointer when it went offline
  std::atomic<uint32_t> refs{3};
  std::atomic<bool> exited{false};      // the thread ended while registered (set by the exit hook)
  bool dead = false;                    // unregistered; its stack is gone (under scanLock)
  Quiescence* domain = nullptr;         // nullptr once the runtime is gone (under lifetimeMutex())
  MiString name;
  pid_t tid = 0;
  StackRecord home;                      // its pthread stack (bounds from pthread_getattr_np)
  std::atomic<StackRecord*> current{&home};  // written by the thread (under scanLock while offline)
  std::atomic<bool> unknownStackReported{false};  // one "call switchStack" diagnostic per thread
};
void releaseRecord(ThreadRecord* r) noexcept;

// A Status built inside a noexcept function: the full message, or, when building it runs
// out of memory, `brief`, which fits std::string's inline buffer and so never allocates.
template <size_t N, typename Build>
Status statusNoexcept(Error code, const char (&brief)[N], Build&& build) noexcept {
  static_assert(N - 1 <= 15, "the fallback must fit libstdc++'s 15-byte small-string buffer");
  try {
    return Status(code, build());
  } catch (...) {
    return Status(code, std::string(brief, N - 1));
  }
}

// Guards ThreadRecord::domain against a runtime destroyed while its threads unregister or exit.
std::mutex& lifetimeMutex() noexcept;
// The calling thread's exit hook (a pthread key destructor, which runs after every C++
// thread_local destructor): arm at registration, disarm when the thread unregisters itself.
Status armExitHook(ThreadRecord* r) noexcept;
// Checked mode (Options::reportUnregisteredThreads): the domains unregistered threads report to.
void addCheckedDomain(Quiescence* q);  // may throw std::bad_alloc
void removeCheckedDomain(Quiescence* q) noexcept;
void disarmExitHook(ThreadRecord* r) noexcept;

}  // namespace patchcall::detail

// patchcall — the text mutex: one per runtime, it guards the registry and every code write.
//
// A patch observer runs under it; entry points re-entered from one must not lock it again,
// so the holder is marked per thread. Retire callbacks and grace-period waits never run
// under it.
#pragma once

#include <mutex>

#include "fair_mutex.h"

namespace patchcall::detail {

// The runtime (its Runtime::Impl) whose text mutex this thread holds, or nullptr.
extern thread_local const void* tlsTextMutexOwner;

// Holds the text mutex and marks this thread as its owner. Restores the previous owner when
// it lets go: a patch observer of runtime A may update runtime B, and A's marker must survive
// B's update.
class TextMutexGuard {
 public:
  TextMutexGuard(FairMutex& m, const void* owner) : lock_(m), owner_(owner), previous_(tlsTextMutexOwner) {
    tlsTextMutexOwner = owner_;
  }
  ~TextMutexGuard() { tlsTextMutexOwner = previous_; }
  TextMutexGuard(const TextMutexGuard&) = delete;
  TextMutexGuard& operator=(const TextMutexGuard&) = delete;
  void unlock() { tlsTextMutexOwner = previous_; lock_.unlock(); }
  void lock() { lock_.lock(); tlsTextMutexOwner = owner_; }

 private:
  std::unique_lock<FairMutex> lock_;
  const void* owner_;
  const void* previous_;
};

}  // namespace patchcall::detail

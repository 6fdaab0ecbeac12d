// patchcall — the Reclaimer across fork(): its locks held over the fork, and the child's
// background thread, started when the child first needs it (reclaimer.h).
#include <new>
#include <string>
#include <thread>

#include "fork_reset.h"
#include "reclaimer.h"
#include "runtime_impl.h"

namespace patchcall::detail {

PATCHCALL_FORK_PATH bool Reclaimer::tryLockPassForFork() {
  return processingHere() || processMutex_.try_lock();
}

PATCHCALL_FORK_PATH void Reclaimer::unlockPassForFork() {
  if (!processingHere()) processMutex_.unlock();
}

PATCHCALL_FORK_PATH void Reclaimer::lockQueueForFork() { mutex_.lock(); }

PATCHCALL_FORK_PATH void Reclaimer::unlockForFork() {
  mutex_.unlock();
  unlockPassForFork();
}

PATCHCALL_FORK_PATH Status Reclaimer::afterForkInChild(bool startThread) noexcept {
  // The parent's reclaimer thread and any waiters do not exist here: its locks, its condition
  // variable and threadHere_ are on the fork page, new (ForkLocks::recreateInChild). Nothing
  // of this object is written unless a thread starts: thread_ still names the parent's thread
  // (forgotten when one starts here, or at stop).
  if (thread_.joinable() && thread_.get_id() == std::this_thread::get_id()) {
    // Forked by a retire callback on our own background thread: that thread is the child's
    // forking thread and goes on running the loop here, so it is this process's thread.
    threadHere_ = true;
    return Status::ok();
  }
  if (!startThread || !background_ || stopping_) {
    startRefused_ = !startThread;
    return Status::ok();
  }
  // Nothing inherited to wait for: the thread starts with the child's first retirement,
  // grace-period request or deferred update (startIfDeferred), so a child that only runs
  // its code or execs never pays for a thread (~6 us on the way into every child).
  if (head_ == nullptr && blobs_.empty() && !roundActive_.load() && !rt_.publication.pending()) return Status::ok();
  if (!spawnThread()) {
    return Status(Error::kOutOfMemory, "fork: the child's background reclaimer could not start; call barrier()/poll() in the child");
  }
  return Status::ok();
}

bool Reclaimer::spawnThread() noexcept {
  try {
    std::thread started([this] { backgroundLoop(); });
    if (thread_.joinable()) new (&thread_) std::thread();  // a fork parent's: forgotten, never joined
    thread_ = std::move(started);
    threadHere_ = true;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// mutex_ held. A thread that cannot start now is tried again at the next wake-up; barrier()
// and poll() do the work meanwhile. Said once.
void Reclaimer::startIfDeferred() noexcept {
  // A fork child's thread not started yet. stop() joins only a thread started before it.
  if (!background_ || threadHere_ || stopping_ || startRefused_) return;
  if (!spawnThread() && !deferredStartReported_) {
    deferredStartReported_ = true;
    rt_.diagnose([] {
      return std::string("patchcall: fork: the child's background reclaimer could not start; barrier() and poll() "
                         "reclaim until it can");
    });
  }
}

}  // namespace patchcall::detail

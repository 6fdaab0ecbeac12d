// patchcall — Publication: which code writes every core is guaranteed to see, and the syncs
// that make it so, shared among the threads that need one.
//
// Every update numbers its write batch (wrote(), under the text mutex, after its last
// write). A sync covers every batch numbered when it starts. publishUpTo(e) returns once a
// sync that started after batch e was written has completed: one caller leads a sync, the
// others sleep until it ends and return if it covered them, else one of them leads the next
// (group commit, as concurrent synchronize() callers share grace periods), so N concurrent
// updaters pay about one sync per round, not N.
//
// Deferred updates (UpdateOptions::publish = Publish::kDeferred) number their batch and return;
// the batch is published by Runtime::publish(), by a later immediate update, by the
// background publisher within Options::publishDelay, or by the start of any grace period
// (Quiescence asks beforeGracePeriod first), so nothing a deferred update moved away from is
// retired or freed before a sync made the move visible everywhere.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>

#include "completion_event.h"
#include "cross_core_sync.h"
#include "fork_reset.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class Publication {
 public:
  explicit Publication(CrossCoreSync& sync) : sync_(sync) {}

  // A batch of code writes is complete (text mutex held): its number.
  uint64_t wrote() noexcept { return written_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  // A sync made under the text mutex after every write so far (an update's protocol sync):
  // everything numbered up to `batch` is published.
  void synced(uint64_t batch) noexcept { raisePublished(batch); }
  bool pending() const noexcept {
    return published_.load(std::memory_order_acquire) < written_.load(std::memory_order_acquire);
  }
  uint64_t written() const noexcept { return written_.load(std::memory_order_acquire); }
  uint64_t published() const noexcept { return published_.load(std::memory_order_acquire); }

  // Returns once batch `batch` is published: a sync that started after it completed. Waits
  // at most until `deadline` for another caller's sync (kTimeout); kSystemError if the sync
  // keeps failing (the code is written; other cores may run old bytes until they serialize).
  Status publishUpTo(uint64_t batch, std::chrono::steady_clock::time_point deadline);
  Status publishAll(std::chrono::steady_clock::time_point deadline) { return publishUpTo(written(), deadline); }
  // Without waiting for another caller: false if a sync is in flight and does not cover
  // everything (the caller tries again later).
  bool tryPublishAll() noexcept;

  uint64_t publishSyncs() const noexcept { return syncs_.load(std::memory_order_relaxed); }
  // Who publishes what nobody else does (the background reclaimer): told when a deferred
  // batch is the first unpublished one.
  void setWaker(void (*wake)(void*), void* arg) noexcept { wake_ = wake, wakeArg_ = arg; }
  void deferred(uint64_t batch) noexcept {
    if (wake_ != nullptr && published_.load(std::memory_order_acquire) + 1 >= batch) wake_(wakeArg_);
  }
  // fork(), in the child: the parent's syncing thread is gone.
  void afterForkInChild() noexcept {
    resetAfterFork(mutex_);
    done_.afterForkInChild();
  }

 private:
  int syncLocked() noexcept;  // one sync covering everything written before it starts
  void raisePublished(uint64_t batch) noexcept {
    uint64_t p = published_.load(std::memory_order_relaxed);
    while (p < batch && !published_.compare_exchange_weak(p, batch, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }

  CrossCoreSync& sync_;
  std::mutex mutex_;  // held by the leader of one publishing sync; never taken under it: the text mutex
  alignas(64) std::atomic<uint64_t> written_{0};
  alignas(64) std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> syncs_{0};
  CompletionEvent done_;  // announced as each sync ends (followers sleep on it)
  void (*wake_)(void*) = nullptr;
  void* wakeArg_ = nullptr;
};

}  // namespace patchcall::detail

// patchcall — deferred reclamation: retire callbacks and retired code blobs.
//
// Callbacks run after a grace period, batched: every callback retired before a grace period
// starts shares it. Blobs additionally need every thread's stack scanned for addresses
// inside them (return addresses of frames still executing there); a hit keeps the blob for
// a later round. A background thread does the waiting unless the embedder owns its threads
// (Options::backgroundReclaimer = false), in which case barrier() and poll() drive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "metadata.h"
#include "patchcall/runtime.h"
#include "quiescence.h"

namespace patchcall::detail {

class Reclaimer {
 public:
  Reclaimer(Runtime::Impl& rt, bool background);
  ~Reclaimer();
  void stop();  // joins the background thread after a final bounded pass

  Status retire(std::function<void()> callback);
  void retireBlob(uint32_t blobId);
  // Processes everything retired before the call, waiting for grace periods (bounded).
  Status barrier(std::chrono::milliseconds deadline);
  // Processes what already-completed grace periods allow; never waits.
  size_t poll();

  // fork(): the parent holds both locks across fork() so the queues and the blob round are
  // consistent in the child (waits for a process() pass in flight, which is bounded by its
  // deadline). The child resets them and starts its own background thread.
  void lockForFork();
  void unlockForFork();
  Status afterForkInChild(bool startThread) noexcept;

  uint64_t callbacksRetired() const { return callbacksRetired_.load(); }
  uint64_t callbacksRun() const { return callbacksRun_.load(); }
  uint64_t blobsRetired() const { return blobsRetired_.load(); }
  uint64_t blobsFreed() const { return blobsFreed_.load(); }
  uint64_t blobsPinned() const { return blobsPinned_.load(); }

 private:
  struct PendingCallback {
    uint64_t snap;
    std::function<void()> callback;
  };
  struct BlobRound {  // tracked blobs; a scan set rides on grace period `snap` when set
    uint64_t snap = 0;
    MiVector<uint32_t> blobs;
    std::unique_ptr<ScanSet> scan;
  };

  // One pass: start a blob round if none is active, optionally wait, then run and free
  // whatever has completed. Returns how many callbacks ran plus blobs freed.
  Result<size_t> process(bool wait, std::chrono::steady_clock::time_point deadline);
  size_t finishRound();
  void backgroundLoop();
  bool idle();

  Runtime::Impl& rt_;
  std::mutex mutex_;  // queues below
  std::condition_variable wake_;
  MiDeque<PendingCallback> callbacks_;  // oldest first; processed in place
  MiVector<uint32_t> blobs_;
  bool stopping_ = false;

  std::mutex processMutex_;  // one process() at a time; guards round_
  BlobRound round_;
  std::atomic<bool> roundActive_{false};  // round_ has blobs (readable without processMutex_)

  std::atomic<uint64_t> callbacksRetired_{0}, callbacksRun_{0};
  std::atomic<uint64_t> blobsRetired_{0}, blobsFreed_{0}, blobsPinned_{0};
  bool background_;
  std::thread thread_;
};

}  // namespace patchcall::detail

// patchcall — deferred reclamation: retire callbacks and retired code blobs.
//
// Callbacks run after a grace period, batched: every callback retired before a grace period
// starts shares it. Blobs additionally need every thread's stack scanned for addresses
// inside them (return addresses of frames still executing there); a hit keeps the blob for
// a later round. A background thread does the waiting unless the embedder owns its threads
// (Options::backgroundReclaimer = false), in which case barrier() and poll() drive it.
#pragma once

#include <atomic>
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
  static constexpr const char* kThreadName = "patchcall-recl";  // the background thread's name (comm)
  Reclaimer(Runtime::Impl& rt, bool background);
  ~Reclaimer();
  void stop();  // joins the background thread after a final bounded pass

  Status retire(std::function<void()> callback);
  // Allocation-free: the node is the queue entry (one FIFO queue for both forms).
  Status retire(RetireNode* node, void (*fn)(RetireNode*)) noexcept;
  void retireBlob(uint32_t blobId);
  // Processes everything retired before the call (nothing retired later is waited for),
  // offline and within the deadline.
  Status barrier(std::chrono::milliseconds deadline);
  // Processes what completed grace periods allow and takes one non-blocking grace-period
  // step; never waits (0 while another pass runs or inside a retire callback).
  size_t poll();
  // Background mode: a grace period was requested (startGracePeriod); the thread drives it.
  void wakeForGracePeriod();
  // A deferred update is the first unpublished one: the background thread publishes it
  // within Options::publishDelay (manual mode: poll() does).
  void wakeForPublish();

  // fork(): the parent holds both locks across fork() so the queues and the blob round are
  // consistent in the child (a process() pass in flight is waited out by prepare's retries:
  // tryLockPassForFork). The child re-creates them (ForkLocks::recreateInChild, holding the pass lock
  // again where this thread ran a pass: processingHere); its own background thread starts at
  // once if it inherited work, else with the first retirement or request. Taken in the library's order:
  // the pass's lock before the text mutex (a pass takes that to free blobs), the queue lock
  // after every other lock of the runtime (it is innermost: deferred updates and veneer
  // retirement take it under the text mutex).
  // The pass lock without waiting: a pass runs user callbacks, which may call any runtime or
  // the runtimes' list, so prepare never waits for one while it holds other locks.
  bool tryLockPassForFork();
  void unlockPassForFork();
  void lockQueueForFork();
  void unlockForFork();
  bool processingHere() const noexcept;  // this thread runs our process() (a callback may fork)
  Status afterForkInChild(bool startThread) noexcept;

  uint64_t callbacksRetired() const { return callbacksRetired_.load(); }
  uint64_t callbacksRun() const { return callbacksRun_.load(); }
  uint64_t blobsRetired() const { return blobsRetired_.load(); }
  uint64_t blobsFreed() const { return blobsFreed_.load(); }
  uint64_t blobsPinned() const { return blobsPinned_.load(); }

 private:
  struct BlobEntry {
    uint32_t id;
    uint64_t ticket;  // retirement order (1, 2, ...): barrier waits for tickets up to its own
    uint64_t written;  // write batches numbered when it was retired: all published before it is freed
  };
  struct BlobRound {  // tracked blobs, oldest first; a scan set rides on grace period `snap` when set
    uint64_t snap = 0;
    MiVector<BlobEntry> blobs;
    std::unique_ptr<ScanSet> scan;
  };

  void enqueue(RetireNode* node, void (*fn)(RetireNode*)) noexcept;
  // One pass (processMutex_ held): start a blob round if none is active, optionally wait for
  // `need` and the round's grace period (else take one non-blocking step), then run and free
  // whatever has completed (callbacks only while fewer than `runUpTo` have run in all).
  // Returns how many callbacks ran plus blobs freed.
  Result<size_t> process(bool wait, std::chrono::steady_clock::time_point deadline, uint64_t need,
                         uint64_t runUpTo = UINT64_MAX);
  size_t finishRound();
  void backgroundLoop();
  bool spawnThread() noexcept;      // false if std::thread threw
  void startIfDeferred() noexcept;  // mutex_ held
  uint64_t oldestBlobTicket();  // UINT64_MAX when no blob is waiting
  Status timedOut(uint64_t callbackTarget, uint64_t blobTarget, std::chrono::milliseconds deadline,
                  const Status& lastWait);

  Runtime::Impl& rt_;
  std::mutex& mutex_;  // queues below; on the fork page (fork_locks.h), as processMutex_
  std::condition_variable& wake_;  // on the fork page (ForkLocks::reclaimWake)
  RetireNode* head_ = nullptr;  // callbacks, oldest first (intrusive: no allocation per node)
  RetireNode** tail_ = &head_;
  uint64_t queued_ = 0;         // callbacks ever queued (the last one's ticket)
  uint64_t maxSnap_ = 0;        // the newest grace period a queued callback waits for
  MiVector<BlobEntry> blobs_;
  uint64_t blobTickets_ = 0;
  bool stopping_ = false;

  std::timed_mutex& processMutex_;  // one process() at a time; guards round_
  BlobRound round_;
  std::atomic<bool> roundActive_{false};  // round_ has blobs (readable without processMutex_)
  std::atomic<uint64_t> roundOldest_{UINT64_MAX};  // round_'s oldest ticket (idem)
  std::atomic<uint64_t> pinnedNow_{0};  // blobs the last finished round kept (a stack held them)
  std::atomic<uint64_t> finished_{0};   // callbacks run, in queue order: tickets <= this are done

  std::atomic<uint64_t> callbacksRetired_{0}, callbacksRun_{0};
  std::atomic<uint64_t> blobsRetired_{0}, blobsFreed_{0}, blobsPinned_{0};
  bool background_;
  // The background thread; in a fork child, the parent's until one starts here (joinable,
  // but not this process's: threadHere_ says whose it is).
  std::thread thread_;
  bool& threadHere_;  // on the fork page (ForkLocks::reclaimThreadHere); false in a child
  std::atomic<bool> threadRunning_{false};  // set by the background thread once it runs
  bool startRefused_ = false;            // a fork child whose runtime is unusable starts none
  bool deferredStartReported_ = false;   // (mutex_)
};

}  // namespace patchcall::detail

// patchcall — deferred reclamation of callbacks and code blobs.
#include "reclaimer.h"

#include <pthread.h>

#include <algorithm>
#include <cstddef>
#include <new>

#include "deadline.h"
#include "fork_reset.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall::detail {

namespace {
// The reclaimer whose process() runs on this thread (a retire callback may fork).
thread_local const Reclaimer* tlsProcessing = nullptr;

// A std::function retirement: the node and the callback in one metadata allocation.
struct FunctionNode : RetireNode {
  std::function<void()> callback;
};

void runFunctionNode(RetireNode* node) {
  auto* f = static_cast<FunctionNode*>(node);
  struct Free {
    void operator()(FunctionNode* p) const noexcept {
      p->~FunctionNode();
      metadataFree(p);
    }
  };
  std::unique_ptr<FunctionNode, Free> owned(f);  // freed even if the callback throws
  owned->callback();
}
}  // namespace

Reclaimer::Reclaimer(Runtime::Impl& rt, bool background)
    : rt_(rt),
      mutex_(rt.forkLocks->reclaimQueue),
      wake_(rt.forkLocks->reclaimWake),
      processMutex_(rt.forkLocks->reclaimPass),
      background_(background),
      threadHere_(rt.forkLocks->reclaimThreadHere) {
  if (!background) return;
  thread_ = std::thread([this] {
    threadRunning_.store(true, std::memory_order_release);
    backgroundLoop();
  });
  threadHere_ = true;
  // Return only once the thread runs: a fork() right after Runtime::create must not catch it
  // inside its start-up (an allocator that is not fork-safe, as ASan's, would then deadlock
  // the child on its first allocation). Bounded: a thread that cannot be scheduled in 1 s is
  // not waited for.
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!threadRunning_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < end) {
    std::this_thread::yield();
  }
}

PATCHCALL_FORK_PATH bool Reclaimer::processingHere() const noexcept { return tlsProcessing == this; }

Reclaimer::~Reclaimer() {
  stop();
  // Callbacks whose grace period never completed are dropped, not run (as before); our own
  // std::function nodes are freed, an embedder's intrusive nodes stay the embedder's.
  for (RetireNode* node = head_; node != nullptr;) {
    RetireNode* next = node->next;
    if (node->fn == &runFunctionNode) {
      auto* f = static_cast<FunctionNode*>(node);
      f->~FunctionNode();
      metadataFree(f);
    }
    node = next;
  }
}

void Reclaimer::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && threadHere_) {
    thread_.join();
  } else if (thread_.joinable()) {
    new (&thread_) std::thread();  // a fork parent's: forgotten, never joined
  }
  // Whatever is still queued runs now if a grace period allows it (bounded).
  uint64_t need;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    need = maxSnap_;
  }
  std::lock_guard<std::timed_mutex> processing(processMutex_);
  (void)process(true, std::chrono::steady_clock::now() + std::chrono::milliseconds(200), need);
}


void Reclaimer::enqueue(RetireNode* node, void (*fn)(RetireNode*)) noexcept {
  node->fn = fn;
  node->next = nullptr;
  node->gracePeriod = rt_.quiescence->snapshot();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    *tail_ = node;
    tail_ = &node->next;
    ++queued_;
    maxSnap_ = std::max(maxSnap_, node->gracePeriod);  // snapshots can step back after a failed grace period
    startIfDeferred();
  }
  callbacksRetired_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_one();
}

Status Reclaimer::retire(std::function<void()> callback) {
  if (!callback) return Status(Error::kInvalidArgument, "retire: empty callback");
  void* p = metadataAllocate(sizeof(FunctionNode), alignof(FunctionNode));
  if (p == nullptr) throw std::bad_alloc();  // the entry point reports kOutOfMemory
  auto* node = new (p) FunctionNode();
  node->callback = std::move(callback);
  enqueue(node, &runFunctionNode);
  return Status::ok();
}

Status Reclaimer::retire(RetireNode* node, void (*fn)(RetireNode*)) noexcept {
  if (node == nullptr || fn == nullptr) {
    return statusNoexcept(Error::kInvalidArgument, "null node or fn", [&] {
      return std::string("retire: ") + (node == nullptr ? "node" : "fn") + " is null";
    });
  }
  enqueue(node, fn);
  return Status::ok();
}

void Reclaimer::retireBlob(uint32_t blobId) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blobs_.push_back({blobId, blobTickets_ + 1, rt_.publication.written()});
    ++blobTickets_;
    startIfDeferred();
  }
  blobsRetired_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_one();
}

uint64_t Reclaimer::oldestBlobTicket() {
  std::lock_guard<std::mutex> lock(mutex_);
  // roundOldest_ is stored before blobs leave blobs_ (under this mutex): a blob moving into
  // the round is always seen in one of the two.
  uint64_t oldest = roundOldest_.load();
  if (!blobs_.empty()) oldest = std::min(oldest, blobs_.front().ticket);
  return oldest;
}

// Allocation discipline: everything that can run out of memory happens before any queue or
// round is changed, so an out-of-memory leaves every retired callback and blob queued.
Result<size_t> Reclaimer::process(bool wait, std::chrono::steady_clock::time_point deadline, uint64_t need,
                                  uint64_t runUpTo) {
  struct Marker {
    const Reclaimer* saved;
    explicit Marker(const Reclaimer* r) : saved(tlsProcessing) { tlsProcessing = r; }
    ~Marker() { tlsProcessing = saved; }
  } marker(this);
  Quiescence& q = *rt_.quiescence;

  // 1. No scan in flight: track the newly retired blobs too and publish a scan set of all
  //    tracked ranges with the next grace period.
  if (round_.scan == nullptr) {
    size_t taken;
    MiVector<BlobEntry> entries(round_.blobs);  // oldest first: the round's, then the new ones
    {
      std::lock_guard<std::mutex> lock(mutex_);
      taken = blobs_.size();
      entries.insert(entries.end(), blobs_.begin(), blobs_.end());
    }
    if (!entries.empty()) {
      auto set = std::make_unique<ScanSet>();
      MiVector<std::pair<uintptr_t, uintptr_t>> ranges;
      ranges.reserve(entries.size());
      {
        std::lock_guard<FairMutex> text(rt_.textMutex);
        for (const BlobEntry& e : entries) ranges.emplace_back(rt_.registry.blob(e.id).rx, rt_.registry.blob(e.id).rx + rt_.registry.blob(e.id).size);
      }
      std::sort(ranges.begin(), ranges.end());
      set->begin.reserve(ranges.size());
      set->end.reserve(ranges.size());
      for (auto& r : ranges) set->begin.push_back(r.first), set->end.push_back(r.second);
      set->hit = std::make_unique<std::atomic<uint8_t>[]>(ranges.size());
      for (size_t i = 0; i < ranges.size(); ++i) set->hit[i].store(0);
      // Nothing below allocates.
      roundOldest_.store(entries.front().ticket);  // before they leave blobs_ (oldestBlobTicket)
      {
        std::lock_guard<std::mutex> lock(mutex_);
        blobs_.erase(blobs_.begin(), blobs_.begin() + static_cast<std::ptrdiff_t>(taken));
      }
      round_.blobs.swap(entries);
      roundActive_.store(true);
      q.setScanSet(set.get());
      round_.scan = std::move(set);
      round_.snap = q.snapshot();
    }
  }

  // 2. The grace period `need` and the round need: wait for it (bounded), or take one
  //    non-blocking step towards it (poll: manual mode has nobody else to start it).
  Status waited;
  TestHooks* hooks = testHooks();
  bool skipGrace = hooks != nullptr && hooks->skipRetireGrace.load();
  if (!skipGrace) {
    if (round_.scan) need = std::max(need, round_.snap);
    if (wait) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (need != 0) waited = q.waitFor(need, std::max(left, std::chrono::milliseconds(0)));
    } else {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (head_ != nullptr) need = std::max(need, maxSnap_);
      }
      if (need != 0 && !q.completed(need)) {
        q.request(need);
        q.tryAdvance();
      }
    }
  }

  // 3. Run the callbacks whose grace period completed, oldest first, one at a time, outside
  //    the queue lock (a callback may retire more).
  size_t done = 0;
  while (finished_.load(std::memory_order_relaxed) < runUpTo) {  // a barrier stops at its own
    RetireNode* node;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      node = head_;
      if (node == nullptr || !q.completed(node->gracePeriod)) break;
      head_ = node->next;
      if (head_ == nullptr) tail_ = &head_;
    }
    const Quiescence* outer = tlsRetireCallbackDomain;  // a callback may drive another runtime's
    tlsRetireCallbackDomain = &q;
    node->fn(node);  // the node may be gone after this
    tlsRetireCallbackDomain = outer;
    finished_.fetch_add(1, std::memory_order_release);
    callbacksRun_.fetch_add(1, std::memory_order_relaxed);
    ++done;
  }

  // 4. The scan's grace period completed: free what no stack referenced.
  if (round_.scan && (skipGrace || q.completed(round_.snap))) done += finishRound();
  if (!waited.isOk()) return waited;
  return done;
}

// Every thread scanned its stack during the round's grace period. Free the blobs no stack
// referenced; the pinned ones stay tracked (in place, no allocation) for the next round.
size_t Reclaimer::finishRound() {
  rt_.quiescence->setScanSet(nullptr);
  const ScanSet& set = *round_.scan;
  size_t freed = 0, kept = 0;
  {
    std::lock_guard<FairMutex> text(rt_.textMutex);
    for (const BlobEntry& e : round_.blobs) {
      uint32_t id = e.id;
      uintptr_t rx = rt_.registry.blob(id).rx;
      size_t i = static_cast<size_t>(std::lower_bound(set.begin.begin(), set.begin.end(), rx) - set.begin.begin());
      if (set.hit[i].load(std::memory_order_relaxed) != 0) {
        round_.blobs[kept++] = e;  // in place, still oldest first
        continue;
      }
      if (rt_.publication.published() < e.written) {
        // Cannot happen: its grace period started with a publish (runtime_impl.cpp). Only
        // the skipPublishBeforeGracePeriod fault gets here; test builds count it.
        if (TestHooks* hooks = testHooks(); hooks != nullptr) hooks->blobsFreedUnpublished.fetch_add(1);
      }
      rt_.registry.freeBlob(id);
      ++freed;
    }
    blobsFreed_.fetch_add(freed, std::memory_order_relaxed);  // under the text mutex: stats() agrees with the registry
  }
  round_.blobs.resize(kept);
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->quarantineScanSets.load()) {
    // Kept readable: a late scan reads a retired set, not freed memory (test builds only).
    static std::mutex quarantineMutex;
    static std::vector<std::unique_ptr<ScanSet>>* quarantine = new std::vector<std::unique_ptr<ScanSet>>();
    round_.scan->state.store(0, std::memory_order_release);
    std::lock_guard<std::mutex> lock(quarantineMutex);
    quarantine->push_back(std::move(round_.scan));
  }
  round_.scan.reset();
  roundActive_.store(kept != 0);
  roundOldest_.store(kept != 0 ? round_.blobs.front().ticket : UINT64_MAX);
  pinnedNow_.store(kept);
  blobsPinned_.fetch_add(kept, std::memory_order_relaxed);
  return freed;
}

Status Reclaimer::barrier(std::chrono::milliseconds deadline) {
  Quiescence& q = *rt_.quiescence;
  if (tlsRetireCallbackDomain == &q || tlsProcessing == this) {
    return Status(Error::kWouldDeadlock, "barrier() called from inside a retire callback");
  }
  auto end = deadlineAfter(deadline);
  uint64_t callbackTarget, blobTarget, need;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    callbackTarget = queued_;
    blobTarget = blobTickets_;
    need = maxSnap_;
  }
  auto done = [&] {
    return finished_.load(std::memory_order_acquire) >= callbackTarget && oldestBlobTicket() > blobTarget;
  };
  // Offline before the first lock: the background pass that holds processMutex_ may be
  // waiting for this very thread's grace period.
  QuiescentWhile quiescent(q);
  Status lastWait;
  while (!done()) {
    std::unique_lock<std::timed_mutex> processing(processMutex_, end);
    if (!processing.owns_lock()) break;  // a background pass still runs at the deadline
    Result<size_t> r = process(true, end, need, callbackTarget);
    processing.unlock();
    if (!r) {
      if (r.status().code() != Error::kTimeout) return r.status();
      lastWait = r.status();
    }
    if (done()) break;
    if (std::chrono::steady_clock::now() >= end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a pinned blob: try a new scan
  }
  if (done()) return Status::ok();
  return timedOut(callbackTarget, blobTarget, deadline, lastWait);
}

// The timeout names what is missing: callbacks (their grace period, and who holds it) or
// blobs (still on a stack, or waiting for their scan's grace period).
Status Reclaimer::timedOut(uint64_t callbackTarget, uint64_t blobTarget, std::chrono::milliseconds deadline,
                           const Status& lastWait) {
  std::string laggards = rt_.quiescence->describeLaggards();
  if (laggards.empty() && !lastWait.message().empty()) laggards = lastWait.message();
  std::string msg = "barrier: timed out after " + std::to_string(deadline.count()) + " ms: ";
  uint64_t finished = finished_.load();
  if (finished < callbackTarget) {
    msg += std::to_string(callbackTarget - finished) +
           " retire callback(s) retired before the call have not run: their grace period did not complete";
    if (!laggards.empty()) msg += " (" + laggards + ")";
  }
  if (oldestBlobTicket() <= blobTarget) {
    if (finished < callbackTarget) msg += "; ";
    uint64_t pinned = pinnedNow_.load();
    if (pinned != 0 && laggards.empty()) {
      msg += std::to_string(pinned) +
             " retired blob(s) are still referenced from a thread's stack (a frame executing inside them, or "
             "a stale word that looks like one of their addresses)";
    } else {
      msg += "retired blobs wait for the grace period of their stack scan";
      if (!laggards.empty()) msg += " (" + laggards + ")";
    }
  }
  return Status(Error::kTimeout, msg);
}

size_t Reclaimer::poll() {
  if (tlsProcessing == this) return 0;  // from this runtime's retire callback: never re-enters
  QuiescentWhile quiescent(*rt_.quiescence);
  std::unique_lock<std::timed_mutex> processing(processMutex_, std::try_to_lock);
  if (!processing.owns_lock()) return 0;  // another pass runs: poll never waits for it
  (void)rt_.publication.tryPublishAll();  // manual mode publishes deferred updates here
  Result<size_t> r = process(false, std::chrono::steady_clock::now(), 0);
  return r ? *r : 0;
}

void Reclaimer::wakeForPublish() {
  if (!background_) return;
  try {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      startIfDeferred();
    }
    wake_.notify_one();
  } catch (...) {  // std::system_error from the mutex: the next grace period publishes
  }
}

void Reclaimer::wakeForGracePeriod() {
  if (!background_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);  // the loop is waiting, or will see the request
    startIfDeferred();
  }
  wake_.notify_one();
}

void Reclaimer::backgroundLoop() {
  pthread_setname_np(pthread_self(), kThreadName);  // for top, gdb and perf (best effort)
  // Blobs pinned by a stack word that stays put (a stale slot in a long-lived frame) would
  // otherwise start a grace period -- and slow every JIT poll -- every few milliseconds.
  auto backoff = std::chrono::milliseconds(2);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    uint64_t requested = rt_.quiescence->requested();
    bool gracePeriodWanted = !rt_.quiescence->completed(requested);
    if (head_ == nullptr && blobs_.empty() && !roundActive_.load() && !gracePeriodWanted) {
      TestHooks* hooks = testHooks();
      if (!rt_.publication.pending() || (hooks != nullptr && hooks->skipPublishBeforeGracePeriod.load())) {
        wake_.wait(lock);
        continue;
      }
      // Deferred updates nobody published: give publish() or the next update the chance to
      // cover them, then publish them ourselves.
      wake_.wait_for(lock, rt_.options.publishDelay);
      lock.unlock();
      (void)rt_.publication.publishAll(deadlineAfter(rt_.quiescence->defaultDeadline()));
      lock.lock();
      continue;
    }
    uint64_t need = std::max(maxSnap_, gracePeriodWanted ? requested : 0);
    lock.unlock();
    auto deadline = deadlineAfter(rt_.quiescence->defaultDeadline());
    Result<size_t> r = catchOutOfMemory("reclaimer", [&]() -> Result<size_t> {
      std::lock_guard<std::timed_mutex> processing(processMutex_);
      return process(true, deadline, need);
    });
    lock.lock();
    // Nothing freed (pinned blobs, or a timeout already reported): back off exponentially.
    if (!r || *r == 0) {
      wake_.wait_for(lock, backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    } else {
      backoff = std::chrono::milliseconds(2);
    }
  }
}

}  // namespace patchcall::detail

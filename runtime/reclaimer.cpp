// patchcall — deferred reclamation of callbacks and code blobs.
#include "reclaimer.h"

#include <algorithm>
#include <cstddef>
#include <new>

#include "deadline.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall::detail {

namespace {
// The reclaimer whose process() runs on this thread (a retire callback may fork).
thread_local const Reclaimer* tlsProcessing = nullptr;
}  // namespace

Reclaimer::Reclaimer(Runtime::Impl& rt, bool background) : rt_(rt), background_(background) {
  if (background) thread_ = std::thread([this] { backgroundLoop(); });
}

void Reclaimer::lockForFork() {
  if (tlsProcessing != this) processMutex_.lock();
  mutex_.lock();
}

void Reclaimer::unlockForFork() {
  mutex_.unlock();
  if (tlsProcessing != this) processMutex_.unlock();
}

Status Reclaimer::afterForkInChild(bool startThread) noexcept {
  // The parent's reclaimer thread and any waiters on these do not exist here.
  new (&mutex_) std::mutex();
  if (tlsProcessing != this) new (&processMutex_) std::mutex();
  new (&wake_) std::condition_variable();
  new (&thread_) std::thread();  // forget the parent's thread without joining it
  if (!startThread || !background_ || stopping_) return Status::ok();
  try {
    thread_ = std::thread([this] { backgroundLoop(); });
  } catch (const std::exception& e) {
    background_ = false;
    return Status(Error::kOutOfMemory, std::string("fork: the child's background reclaimer could not start (") + e.what() +
                                           "); call barrier()/poll() in the child");
  }
  return Status::ok();
}

Reclaimer::~Reclaimer() { stop(); }

void Reclaimer::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whatever is still queued runs now if a grace period allows it (bounded).
  (void)process(true, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
}

Status Reclaimer::retire(std::function<void()> callback) {
  if (!callback) return Status(Error::kInvalidArgument, "retire: empty callback");
  uint64_t snap = rt_.quiescence->snapshot();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    callbacks_.push_back({snap, std::move(callback)});
  }
  callbacksRetired_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_one();
  return Status::ok();
}

void Reclaimer::retireBlob(uint32_t blobId) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blobs_.push_back(blobId);
  }
  blobsRetired_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_one();
}

bool Reclaimer::idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  return callbacks_.empty() && blobs_.empty() && !roundActive_.load();
}

// Allocation discipline: everything that can run out of memory happens before any queue or
// round is changed, so an out-of-memory leaves every retired callback and blob queued.
Result<size_t> Reclaimer::process(bool wait, std::chrono::steady_clock::time_point deadline) {
  std::lock_guard<std::mutex> processing(processMutex_);
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
    MiVector<uint32_t> ids(round_.blobs);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      taken = blobs_.size();
      ids.insert(ids.end(), blobs_.begin(), blobs_.end());
    }
    if (!ids.empty()) {
      auto set = std::make_unique<ScanSet>();
      MiVector<std::pair<uintptr_t, uintptr_t>> ranges;
      ranges.reserve(ids.size());
      {
        std::lock_guard<FairMutex> text(rt_.textMutex);
        for (uint32_t id : ids) ranges.emplace_back(rt_.blobs[id].rx, rt_.blobs[id].rx + rt_.blobs[id].size);
      }
      std::sort(ranges.begin(), ranges.end());
      set->begin.reserve(ranges.size());
      set->end.reserve(ranges.size());
      for (auto& r : ranges) set->begin.push_back(r.first), set->end.push_back(r.second);
      set->hit = std::make_unique<std::atomic<uint8_t>[]>(ranges.size());
      for (size_t i = 0; i < ranges.size(); ++i) set->hit[i].store(0);
      // Nothing below allocates.
      {
        std::lock_guard<std::mutex> lock(mutex_);
        blobs_.erase(blobs_.begin(), blobs_.begin() + static_cast<std::ptrdiff_t>(taken));
      }
      round_.blobs.swap(ids);
      roundActive_.store(true);
      q.setScanSet(set.get());
      round_.scan = std::move(set);
      round_.snap = q.snapshot();
    }
  }

  // 2. Wait for the newest grace period anything queued needs.
  Status waited;
  TestHooks* hooks = testHooks();
  bool skipGrace = hooks != nullptr && hooks->skipRetireGrace.load();
  if (wait && !skipGrace) {
    uint64_t need = round_.scan ? round_.snap : 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!callbacks_.empty()) need = std::max(need, callbacks_.back().snap);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (need != 0) waited = q.waitFor(need, std::max(left, std::chrono::milliseconds(0)));
  }

  // 3. Run the callbacks whose grace period completed, oldest first, one at a time.
  size_t done = 0;
  while (true) {
    std::function<void()> callback;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (callbacks_.empty() || !q.completed(callbacks_.front().snap)) break;
      callback = std::move(callbacks_.front().callback);
      callbacks_.pop_front();
    }
    const Quiescence* outer = tlsRetireCallbackDomain;  // a callback may drive another runtime's
    tlsRetireCallbackDomain = &q;
    callback();
    tlsRetireCallbackDomain = outer;
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
    for (uint32_t id : round_.blobs) {
      uintptr_t rx = rt_.blobs[id].rx;
      size_t i = static_cast<size_t>(std::lower_bound(set.begin.begin(), set.begin.end(), rx) - set.begin.begin());
      if (set.hit[i].load(std::memory_order_relaxed) != 0) {
        round_.blobs[kept++] = id;
        continue;
      }
      rt_.freeBlobLocked(id);
      ++freed;
    }
  }
  round_.blobs.resize(kept);
  round_.scan.reset();
  roundActive_.store(kept != 0);
  blobsFreed_.fetch_add(freed, std::memory_order_relaxed);
  blobsPinned_.fetch_add(kept, std::memory_order_relaxed);
  return freed;
}

Status Reclaimer::barrier(std::chrono::milliseconds deadline) {
  if (tlsRetireCallbackDomain == rt_.quiescence.get()) {
    return Status(Error::kWouldDeadlock, "barrier() called from inside a retire callback");
  }
  auto end = deadlineAfter(deadline);
  while (true) {
    Result<size_t> r = process(true, end);
    if (!r) return r.status();
    if (idle()) return Status::ok();
    if (std::chrono::steady_clock::now() >= end) {
      return Status(Error::kTimeout,
                    "barrier: retired blobs are still referenced from a thread's stack (a frame "
                    "is executing inside them) or callbacks are pending after the deadline");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

size_t Reclaimer::poll() {
  Result<size_t> r = process(false, std::chrono::steady_clock::now());
  return r ? *r : 0;
}

void Reclaimer::backgroundLoop() {
  // Blobs pinned by a stack word that stays put (a stale slot in a long-lived frame) would
  // otherwise start a grace period -- and slow every JIT poll -- every few milliseconds.
  auto backoff = std::chrono::milliseconds(2);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (callbacks_.empty() && blobs_.empty() && !roundActive_.load()) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    auto deadline = deadlineAfter(rt_.quiescence->defaultDeadline());
    Result<size_t> r = catchOutOfMemory("reclaimer", [&]() -> Result<size_t> { return process(true, deadline); });
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

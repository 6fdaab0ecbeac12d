// patchcall — deferred reclamation of callbacks and code blobs.
#include "reclaimer.h"

#include <algorithm>

#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall::detail {

Reclaimer::Reclaimer(Runtime::Impl& rt, bool background) : rt_(rt) {
  if (background) thread_ = std::thread([this] { backgroundLoop(); });
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

Result<size_t> Reclaimer::process(bool wait, std::chrono::steady_clock::time_point deadline) {
  std::lock_guard<std::mutex> processing(processMutex_);
  Quiescence& q = *rt_.quiescence;

  MiVector<PendingCallback> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    batch.swap(callbacks_);
    if (round_.blobs.empty() && !blobs_.empty()) {
      round_.blobs.swap(blobs_);
      roundActive_.store(true);
    }
  }
  if (!round_.blobs.empty() && round_.scan == nullptr) {
    // Ranges of this round's blobs, published with the next grace period.
    auto set = std::make_unique<ScanSet>();
    {
      std::lock_guard<FairMutex> text(rt_.textMutex);
      MiVector<std::pair<uintptr_t, uintptr_t>> ranges;
      for (uint32_t id : round_.blobs) ranges.emplace_back(rt_.blobs[id].rx, rt_.blobs[id].rx + rt_.blobs[id].size);
      std::sort(ranges.begin(), ranges.end());
      for (auto& r : ranges) set->begin.push_back(r.first), set->end.push_back(r.second);
    }
    set->hit = std::make_unique<std::atomic<uint8_t>[]>(set->begin.size());
    for (size_t i = 0; i < set->begin.size(); ++i) set->hit[i].store(0);
    q.setScanSet(set.get());
    round_.scan = std::move(set);
    round_.snap = q.snapshot();
  }

  Status waited;
  if (wait && !(testHooks() != nullptr && testHooks()->skipRetireGrace.load())) {
    uint64_t need = round_.scan ? round_.snap : 0;
    for (auto& c : batch) need = std::max(need, c.snap);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (need != 0) waited = q.waitFor(need, std::max(left, std::chrono::milliseconds(0)));
  }

  size_t done = 0;
  MiVector<PendingCallback> notYet;
  for (auto& c : batch) {
    if (!q.completed(c.snap)) {
      notYet.push_back(std::move(c));
      continue;
    }
    tlsInRetireCallback = true;
    c.callback();
    tlsInRetireCallback = false;
    callbacksRun_.fetch_add(1, std::memory_order_relaxed);
    ++done;
  }
  if (!notYet.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    callbacks_.insert(callbacks_.begin(), std::make_move_iterator(notYet.begin()),
                      std::make_move_iterator(notYet.end()));
  }
  TestHooks* hooks = testHooks();
  bool skipGrace = hooks != nullptr && hooks->skipRetireGrace.load();
  if (round_.scan && (skipGrace || q.completed(round_.snap))) done += finishRound();
  if (!waited.isOk()) return waited;
  return done;
}

// The round's grace period completed: every thread scanned its stack. Free the blobs no
// stack referenced; the rest wait for another round.
size_t Reclaimer::finishRound() {
  rt_.quiescence->setScanSet(nullptr);
  const ScanSet& set = *round_.scan;
  MiVector<uint32_t> pinned;
  size_t freed = 0;
  {
    std::lock_guard<FairMutex> text(rt_.textMutex);
    for (uint32_t id : round_.blobs) {
      uintptr_t rx = rt_.blobs[id].rx;
      size_t i = static_cast<size_t>(std::lower_bound(set.begin.begin(), set.begin.end(), rx) - set.begin.begin());
      if (set.hit[i].load(std::memory_order_relaxed) != 0) {
        pinned.push_back(id);
        continue;
      }
      rt_.freeBlobLocked(id);
      ++freed;
    }
  }
  blobsFreed_.fetch_add(freed, std::memory_order_relaxed);
  blobsPinned_.fetch_add(pinned.size(), std::memory_order_relaxed);
  round_ = BlobRound();
  roundActive_.store(false);
  if (!pinned.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    blobs_.insert(blobs_.end(), pinned.begin(), pinned.end());
  }
  return freed;
}

Status Reclaimer::barrier(std::chrono::milliseconds deadline) {
  if (tlsInRetireCallback) {
    return Status(Error::kWouldDeadlock, "barrier() called from inside a retire callback");
  }
  auto end = std::chrono::steady_clock::now() + deadline;
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
    auto deadline = std::chrono::steady_clock::now() + rt_.quiescence->defaultDeadline();
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

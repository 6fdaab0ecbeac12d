// patchcall — Publication (see publication.h).
#include "publication.h"

#include <cstring>
#include <string>

namespace patchcall::detail {

int Publication::syncLocked() noexcept {
  // Everything numbered now was written before this load (acquire pairs with wrote()'s
  // release), so the sync that follows covers it.
  uint64_t covers = written_.load(std::memory_order_acquire);
  if (int e = sync_.sync(); e != 0) return e;
  syncs_.fetch_add(1, std::memory_order_relaxed);
  raisePublished(covers);
  return 0;
}

Status Publication::publishUpTo(uint64_t batch, std::chrono::steady_clock::time_point deadline) {
  while (published_.load(std::memory_order_acquire) < batch) {
    if (std::unique_lock<std::mutex> leader(mutex_, std::try_to_lock); leader.owns_lock()) {
      // The leader: a sync that ended while we raced for the lock may have covered us.
      int e = published_.load(std::memory_order_acquire) >= batch ? 0 : syncLocked();
      leader.unlock();
      done_.announce();
      if (e != 0) {
        return Status(Error::kSystemError, "publish: the cross-core sync failed three times (" + std::string(std::strerror(e)) +
                                               "); the code is written, but other cores may run the old bytes until they "
                                               "next serialize");
      }
      continue;
    }
    // A follower: sleep until the sync in flight ends, then look again (it may cover us).
    uint32_t seen = done_.current();
    if (published_.load(std::memory_order_acquire) >= batch) break;
    if (!done_.wait(seen, deadline)) {
      return Status(Error::kTimeout, "publish: another thread's cross-core sync did not complete before the deadline");
    }
  }
  return Status::ok();
}

bool Publication::tryPublishAll() noexcept {
  uint64_t batch = written();
  if (published_.load(std::memory_order_acquire) >= batch) return true;
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  bool ok = published_.load(std::memory_order_acquire) >= batch || syncLocked() == 0;
  lock.unlock();
  done_.announce();
  return ok;
}

}  // namespace patchcall::detail

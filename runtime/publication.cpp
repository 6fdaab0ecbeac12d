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
    std::unique_lock<std::timed_mutex> lock(mutex_, std::defer_lock);
    if (!lock.try_lock_until(deadline)) {
      return Status(Error::kTimeout, "publish: another thread's cross-core sync did not complete before the deadline");
    }
    // A sync that ran while we waited for the lock may have covered us already.
    if (published_.load(std::memory_order_acquire) >= batch) break;
    if (int e = syncLocked(); e != 0) {
      return Status(Error::kSystemError, "publish: the cross-core sync failed three times (" + std::string(std::strerror(e)) +
                                             "); the code is written, but other cores may run the old bytes until they "
                                             "next serialize");
    }
  }
  return Status::ok();
}

bool Publication::tryPublishAll() noexcept {
  uint64_t batch = written();
  if (published_.load(std::memory_order_acquire) >= batch) return true;
  std::unique_lock<std::timed_mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  if (published_.load(std::memory_order_acquire) >= batch) return true;
  return syncLocked() == 0;
}

}  // namespace patchcall::detail

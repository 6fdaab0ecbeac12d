// patchcall — Publication (see publication.h).
#include "publication.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
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

void Publication::announce() noexcept {
  done_.fetch_add(1, std::memory_order_seq_cst);
  // Dekker with a follower (followers_++ then FUTEX_WAIT on done_): one we do not see here has
  // not slept yet and will find done_ changed.
  if (followers_.load(std::memory_order_seq_cst) != 0) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&done_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
  }
}

Status Publication::publishUpTo(uint64_t batch, std::chrono::steady_clock::time_point deadline) {
  while (published_.load(std::memory_order_acquire) < batch) {
    if (std::unique_lock<std::mutex> leader(mutex_, std::try_to_lock); leader.owns_lock()) {
      // The leader: a sync that ended while we raced for the lock may have covered us.
      int e = published_.load(std::memory_order_acquire) >= batch ? 0 : syncLocked();
      leader.unlock();
      announce();
      if (e != 0) {
        return Status(Error::kSystemError, "publish: the cross-core sync failed three times (" + std::string(std::strerror(e)) +
                                               "); the code is written, but other cores may run the old bytes until they "
                                               "next serialize");
      }
      continue;
    }
    // A follower: sleep until the sync in flight ends, then look again (it may cover us).
    uint32_t seen = done_.load(std::memory_order_acquire);
    if (published_.load(std::memory_order_acquire) >= batch) break;
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      return Status(Error::kTimeout, "publish: another thread's cross-core sync did not complete before the deadline");
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(10)))
                  .count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    followers_.fetch_add(1, std::memory_order_seq_cst);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&done_), FUTEX_WAIT_PRIVATE, seen, &ts, nullptr, 0);
    followers_.fetch_sub(1, std::memory_order_relaxed);
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
  announce();
  return ok;
}

}  // namespace patchcall::detail

// patchcall — make every core of this process serialize its instruction stream.
//
// After a code write, a core that already fetched the old bytes may execute them until it
// runs a serializing instruction. membarrier(PRIVATE_EXPEDITED_SYNC_CORE) IPIs every core
// running this mm and guarantees a core-serializing instruction before it returns to user
// space; this one syscall is the dominant cost of an update, so updates are batched behind it.
#pragma once

#include <atomic>
#include <cstdint>

#include "patchcall/options.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class CrossCoreSync {
 public:
  // Registers membarrier SYNC_CORE (or prepares the mprotect fallback) per `method`.
  Status init(SyncMethod method);
  ~CrossCoreSync();
  void sync() noexcept;
  SyncMethod method() const noexcept { return method_; }
  uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  SyncMethod method_ = SyncMethod::kMembarrier;
  void* ipiPage_ = nullptr;  // for kMprotectIpi
  std::atomic<uint64_t> count_{0};
};

}  // namespace patchcall::detail

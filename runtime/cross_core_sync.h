// patchcall — make every core of this process serialize its instruction stream.
//
// After a code write, a core that already fetched the old bytes may execute them until it
// runs a serializing instruction. membarrier(PRIVATE_EXPEDITED_SYNC_CORE) IPIs every core
// running this mm and guarantees a core-serializing instruction before it returns to user
// space; this one syscall is the dominant cost of an update, so updates are batched behind it.
//
// The mprotect fallback (kMprotectIpi) relies on the kernel flushing a downgraded PTE with an
// IPI to every core running this mm (the interrupt return serializes). Linux 6.15+ on AMD
// CPUs with INVLPGB flushes remote TLBs with a broadcast instruction instead -- no IPI, no
// serialization -- so the fallback is refused there (init reports why).
#pragma once

#include <atomic>
#include <cstdint>

#include "patchcall/options.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class CrossCoreSync {
 public:
  // Registers membarrier SYNC_CORE (or prepares the mprotect fallback) per `method`. With
  // kEmulatorRemap (or kAuto and PATCHCALL_SYNC=emulator-remap) every sync also calls
  // `remap` (CodeArena::remapRx: 0 or errno) first.
  Status init(SyncMethod method, int (*remap)(void*) = nullptr, void* remapArg = nullptr);
  ~CrossCoreSync();
  // 0, or the errno of a sync that kept failing (transient failures are retried): the code
  // is written, but other cores may still run the old bytes.
  [[nodiscard]] int sync() noexcept;
  // sync() as a Status naming `what` (for callers that report it).
  Status syncOrError(const char* what);
  SyncMethod method() const noexcept { return method_; }
  // PATCHCALL_SYNC=emulator-remap: the test scripts run under qemu-user (cross_core_sync.cpp).
  static bool emulatorRequested() noexcept;
  uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

  // Empty when the mprotect fallback serializes every core here; else the reason it cannot.
  // `release` is uname's kernel release, `cpuFlags` the flags line of /proc/cpuinfo.
  static std::string fallbackUnsafeReason(const char* release, const char* cpuFlags);

 private:
  int syncOnce() noexcept;
  SyncMethod method_ = SyncMethod::kMembarrier;
  void* ipiPage_ = nullptr;  // for kMprotectIpi
  int (*remap_)(void*) = nullptr;  // for kEmulatorRemap
  void* remapArg_ = nullptr;
  std::atomic<uint64_t> count_{0};
};

}  // namespace patchcall::detail

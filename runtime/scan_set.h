// patchcall — the set of retired code ranges a grace period's stack scans look for.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "metadata.h"

namespace patchcall::detail {

// Code ranges awaiting reclamation; `hit[i]` is set when some stack holds an address in range i.
struct ScanSet {
  static constexpr uint32_t kLive = 0x5CA25E7u;
  MiVector<uintptr_t> begin, end;  // sorted, disjoint
  std::unique_ptr<std::atomic<uint8_t>[]> hit;
  // kLive until the set is retired. Test builds can keep retired sets readable
  // (setQuarantineScanSets) so that a scan of a set its grace period already gave up is
  // counted (scansOfRetiredSets) instead of being a silent use after free.
  std::atomic<uint32_t> state{kLive};
  ~ScanSet() { state.store(0, std::memory_order_relaxed); }
  void scan(uintptr_t lo, uintptr_t hi) const noexcept;
  void markAll() const noexcept;  // a stack that could not be read: pin everything
};

}  // namespace patchcall::detail

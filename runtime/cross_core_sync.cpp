// patchcall — cross-core instruction-stream serialization.
#include "cross_core_sync.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

namespace patchcall::detail {
namespace {

long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0U, 0); }

bool registerSyncCore() {
  long supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0;
}

}  // namespace

Status CrossCoreSync::init(SyncMethod method) {
  if (method != SyncMethod::kMprotectIpi) {
    if (registerSyncCore()) {
      method_ = SyncMethod::kMembarrier;
    } else if (method == SyncMethod::kMembarrier) {
      return Status(Error::kSyncUnsupported,
                    std::string("the kernel refused membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE): ") +
                        std::strerror(errno) +
                        "; use SyncMethod::kAuto or kMprotectIpi for the mprotect-IPI fallback");
    } else {
      method_ = SyncMethod::kMprotectIpi;
    }
  } else {
    method_ = SyncMethod::kMprotectIpi;
  }
  if (method_ == SyncMethod::kMprotectIpi) {
    ipiPage_ = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ipiPage_ == MAP_FAILED) {
      ipiPage_ = nullptr;
      return Status(Error::kMapFailed, "mmap of the IPI page for the mprotect fallback failed");
    }
  }
  return Status::ok();
}

CrossCoreSync::~CrossCoreSync() {
  if (ipiPage_ != nullptr) munmap(ipiPage_, 4096);
}

void CrossCoreSync::sync() noexcept {
  count_.fetch_add(1, std::memory_order_relaxed);
  if (method_ == SyncMethod::kMembarrier) {
    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
    return;
  }
  // Fallback: dirty the page so its TLB entry is live, then revoke write access. The kernel
  // must shoot down the entry on every core that may cache it (all cores running this mm);
  // each IPI ends in an interrupt return, which serializes that core.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  static_cast<volatile uint8_t*>(ipiPage_)[0] = 1;
  mprotect(ipiPage_, 4096, PROT_READ);
  mprotect(ipiPage_, 4096, PROT_READ | PROT_WRITE);
}

}  // namespace patchcall::detail

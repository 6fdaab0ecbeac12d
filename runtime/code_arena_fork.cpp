// patchcall — the code arena across fork(): shared until first written, or copied at once.
//
// A fork leaves parent and child mapping the same memfd. Neither writes it again: each
// process's first code write after the fork first moves that process onto a private copy
// (unshare), so the child's start costs no copy and a process that never writes code again
// (a prefork worker, an exec) never makes one. The copy happens the other way round only when
// a code reservation is outstanding at the fork, because its owner writes the reserved bytes
// through its own pointer, under no lock: then the prepare handler copies and the child adopts
// the copy before either process runs on.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "code_arena.h"
#include "fork_reset.h"

namespace patchcall::detail {

// Under the text mutex and the arena lock (a fork's prepare handler, unshare), so no byte
// handed out changes during the copy. Never-touched bytes are zero in both memfds.
Result<int> CodeArena::copyTouched(const char* forWhom) const {
  int fd = memfd_create("patchcall-code", MFD_CLOEXEC);
  if (fd < 0) return Status(Error::kMapFailed, std::string("fork: memfd_create for ") + forWhom + ": " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(size_)) != 0) {
    Status s(Error::kMapFailed, std::string("fork: ftruncate of ") + forWhom + ": " + std::strerror(errno));
    close(fd);
    return s;
  }
  for (size_t done = touchedBegin_; done < touchedEnd_;) {
    ssize_t n = pwrite(fd, rw_ + done, touchedEnd_ - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s(Error::kMapFailed, "fork: copying " + std::to_string(touchedEnd_ - touchedBegin_) + " bytes of code for " +
                                      forWhom + " failed: " + std::strerror(n < 0 ? errno : ENOSPC));
      close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

// Same addresses, same bytes: every pointer into the arena (sites, blobs, trampolines) stays
// valid, and a thread running the code sees it throughout (the kernel replaces each mapping
// under the address-space lock; a fault in between waits for it). The new page-cache pages are
// made coherent for instruction fetch by the kernel when first mapped executable.
int CodeArena::mapViews(int fd) noexcept {
  if (mmap(rw_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
      mmap(rx_, size_, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    return errno;
  }
  return 0;
}

Status CodeArena::prepareForkCopy() {
  dropForkCopy();
  Result<int> fd = copyTouched("the child's code copy");
  if (!fd) return fd.status();
  forkFd_ = *fd;
  return Status::ok();
}

Status CodeArena::adoptForkCopy() noexcept {
  if (forkFd_ < 0) return Status(Error::kMapFailed, "fork: no copy of the code was made for the child");
  if (int e = mapViews(forkFd_); e != 0) {
    return Status(Error::kMapFailed, std::string("fork: mapping the child's code copy failed: ") + std::strerror(e));
  }
  close(fd_);
  fd_ = forkFd_;
  forkFd_ = -1;
  return Status::ok();
}

PATCHCALL_FORK_PATH void CodeArena::dropForkCopy() noexcept {
  if (forkFd_ >= 0) close(forkFd_);
  forkFd_ = -1;
}

Status CodeArena::unshare() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!shared_.load(std::memory_order_relaxed)) return Status::ok();  // another writer was first
  if (Status refused = writeRefusal(); !refused.isOk()) return refused;
  Result<int> fd = copyTouched("this process's own copy of the code");
  if (!fd) return fd.status();  // still shared, still consistent: the next write tries again
  if (int e = mapViews(*fd); e != 0) {
    close(*fd);
    unwritable_ = Status(Error::kMapFailed, std::string("fork: mapping this process's own copy of the code failed (") +
                                                std::strerror(e) + "): it can no longer write code");
    broken_.store(true, std::memory_order_release);
    return unwritable_;
  }
  close(fd_);
  fd_ = *fd;
  for (const auto& [offset, len] : deferredFills_) fillNow(offset, len);
  MiVector<std::pair<size_t, size_t>>().swap(deferredFills_);
  unshares_.fetch_add(1, std::memory_order_relaxed);
  shared_.store(false, std::memory_order_release);  // after the re-map: a reader seeing false writes the copy
  return Status::ok();
}

}  // namespace patchcall::detail

// patchcall — ProcSelfMem (see proc_self_mem.h).
#include "proc_self_mem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>

#include "arch/arch.h"
#include "fork_reset.h"
#include "proc_maps.h"

namespace patchcall::detail {

bool ProcSelfMem::open() noexcept {
  close();
  fd_ = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  owner_ = getpid();
  return fd_ >= 0;
}

// A descriptor of another process is closed already (closeInherited) or was never ours to
// close: its number may name a file the child opened since.
void ProcSelfMem::close() noexcept {
  if (fd_ >= 0 && owner_ == getpid()) ::close(fd_);
  fd_ = -1;
}

bool ProcSelfMem::isOpen() const noexcept { return fd_ >= 0 && owner_ == getpid(); }

// Without libc: its close() would be the only code of a 64 KiB window of libc's text the child
// runs on its way to running, a fault of its own (arch/*/raw_syscall.h).
PATCHCALL_FORK_PATH void ProcSelfMem::closeInherited(pid_t parent) const noexcept {
  if (fd_ >= 0 && owner_ == parent) (void)arch::rawClose(fd_);
}

bool ProcSelfMem::read(uintptr_t at, void* out, size_t n) const noexcept {
  if (!isOpen()) {
    errno = EBADF;
    return false;
  }
  ssize_t done = pread(fd_, out, n, static_cast<off_t>(at));
  if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
  return done >= 0 && static_cast<size_t>(done) == n;
}

bool ProcSelfMem::write(uintptr_t at, const void* bytes, size_t n) const noexcept {
  if (!isOpen()) {
    errno = EBADF;
    return false;
  }
  ssize_t done = pwrite(fd_, bytes, n, static_cast<off_t>(at));
  if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
  return done >= 0 && static_cast<size_t>(done) == n;
}

// The protection is raised and put back from what /proc/self/maps says it is.
void dropEmulatorTranslations(uintptr_t rx, size_t n) noexcept {
  try {
    uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t begin = rx & ~(page - 1), end = (rx + n + page - 1) & ~(page - 1);
    for (const Mapping& m : mappingsCovering(readMaps(), begin, end)) {
      uintptr_t from = std::max(begin, m.begin), to = std::min(end, m.end);
      int prot = (m.perms[0] == 'r' ? PROT_READ : 0) | (m.perms[1] == 'w' ? PROT_WRITE : 0) | (m.exec() ? PROT_EXEC : 0);
      if ((prot & PROT_WRITE) != 0) continue;  // written by the guest itself: the emulator saw it
      (void)mprotect(reinterpret_cast<void*>(from), to - from, prot | PROT_WRITE);
      (void)mprotect(reinterpret_cast<void*>(from), to - from, prot);
    }
  } catch (const std::bad_alloc&) {
  }
}

}  // namespace patchcall::detail

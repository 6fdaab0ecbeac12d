// patchcall — ProcSelfMem (see proc_self_mem.h).
#include "proc_self_mem.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>

#include "proc_maps.h"

namespace patchcall::detail {

bool ProcSelfMem::open() noexcept {
  fd_.reset(::open("/proc/self/mem", O_RDWR | O_CLOEXEC));
  return fd_.held();
}

bool ProcSelfMem::read(uintptr_t at, void* out, size_t n) const noexcept {
  if (!isOpen()) {
    errno = EBADF;
    return false;
  }
  ssize_t done = pread(fd_.fd(), out, n, static_cast<off_t>(at));
  if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
  return done >= 0 && static_cast<size_t>(done) == n;
}

bool ProcSelfMem::write(uintptr_t at, const void* bytes, size_t n) const noexcept {
  if (!isOpen()) {
    errno = EBADF;
    return false;
  }
  ssize_t done = pwrite(fd_.fd(), bytes, n, static_cast<off_t>(at));
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

// patchcall — ProcSelfMem (see proc_self_mem.h).
#include "proc_self_mem.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace patchcall::detail {

bool ProcSelfMem::open() noexcept {
  close();
  fd_ = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  return fd_ >= 0;
}

void ProcSelfMem::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool ProcSelfMem::read(uintptr_t at, void* out, size_t n) const noexcept {
  ssize_t done = pread(fd_, out, n, static_cast<off_t>(at));
  if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
  return done >= 0 && static_cast<size_t>(done) == n;
}

bool ProcSelfMem::write(uintptr_t at, const void* bytes, size_t n) const noexcept {
  ssize_t done = pwrite(fd_, bytes, n, static_cast<off_t>(at));
  if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
  return done >= 0 && static_cast<size_t>(done) == n;
}

}  // namespace patchcall::detail

// patchcall — FileWriter (see file_writer.h).
#include "file_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace patchcall::observe {

Status FileWriter::open(std::string path, std::string_view what, bool readable, bool truncate) {
  close();
  what_ = what;
  path_ = std::move(path);
  const int flags = (readable ? O_RDWR : O_WRONLY) | O_CREAT | (truncate ? O_TRUNC : 0) | O_APPEND | O_CLOEXEC;
  fd_.reset(::open(path_.c_str(), flags, 0644));
  if (!fd_.held()) {
    const int e = errno;
    return {Error::kSystemError, what_ + ": cannot create " + path_ + ": " + std::strerror(e) +
                                     " (disabled)"};
  }
  return Status::ok();
}

Status FileWriter::write(const void* data, size_t size) {
  if (!enabled()) return Status::ok();
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_.fd(), p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : ENOSPC;
      return fail({Error::kSystemError, what_ + ": write to " + path_ + " failed: " +
                                            std::strerror(e) + " (disabled)"});
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok();
}

Status FileWriter::fail(Status status) {
  close();
  return status;
}

}  // namespace patchcall::observe

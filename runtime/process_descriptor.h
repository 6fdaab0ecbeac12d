// patchcall — a file descriptor and the process that opened it.
//
// fork() copies every descriptor into the child, where it goes on naming what the parent
// opened: a /proc/self/mem the parent opened is the parent's memory, an O_APPEND file shares
// the parent's offset. So a descriptor is used only by the process that opened it. A child's
// atfork handler closes the inherited one (closeInherited) without writing this object, whose
// page the child would otherwise copy on its way to running (a fault of 3-12 us here), and the
// child opens its own when it first needs one. Used by ProcSelfMem and observe::FileWriter.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include "arch/arch.h"  // rawClose

namespace patchcall::detail {

class ProcessDescriptor {
 public:
  ProcessDescriptor() = default;
  ~ProcessDescriptor() { close(); }
  ProcessDescriptor(const ProcessDescriptor&) = delete;
  ProcessDescriptor& operator=(const ProcessDescriptor&) = delete;

  // Closes the previous descriptor (close()) and holds `fd`, opened by this process (-1: a
  // failed open).
  void reset(int fd) noexcept {
    close();
    fd_ = fd;
    owner_ = getpid();
  }
  // Open, and opened by this process (getpid() per call: not for a per-instruction path).
  bool openHere() const noexcept { return fd_ >= 0 && owner_ == getpid(); }
  // Open here, or inherited through fork() and not reset since.
  bool held() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  // Closes a descriptor this process opened. Another process's is forgotten, not closed: it
  // was closed by closeInherited, or its number may name a file the child opened since.
  void close() noexcept {
    if (openHere()) (void)::close(fd_);
    fd_ = -1;
  }
  // In a fork child, from the atfork handler, before any other code of the child runs: closes
  // the descriptor if `parent` opened it (then it is open here, inherited), by a raw system
  // call: libc's close() would be the only code of its 64 KiB window of libc's text the child
  // runs on its way to running, a fault of its own (arch/*/raw_syscall.h). Writes nothing.
  // Always inlined into its PATCHCALL_FORK_PATH caller: an inline function given a section
  // of its own conflicts with the callers' section where it is not inlined (-O0).
  [[gnu::always_inline]] void closeInherited(pid_t parent) const noexcept {
    if (fd_ >= 0 && owner_ == parent) (void)arch::rawClose(fd_);
  }

 private:
  int fd_ = -1;
  pid_t owner_ = 0;  // the process that opened fd_
};

}  // namespace patchcall::detail

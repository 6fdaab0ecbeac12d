// patchcall — /proc/self/mem: the process's own memory as a file. A write reaches text that
// stays read-execute (the kernel writes with FOLL_FORCE, copying a private file page once); a
// read never faults on a mapping that is gone. A fork child's inherited descriptor still names
// the parent's memory, so a child reopens it before its first access (TextWriter for foreign
// sites, aot::AotTextWriter for compiled text).
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::detail {

class ProcSelfMem {
 public:
  ProcSelfMem() = default;
  ~ProcSelfMem() { close(); }
  ProcSelfMem(const ProcSelfMem&) = delete;
  ProcSelfMem& operator=(const ProcSelfMem&) = delete;

  // Opens (or reopens) it read-write; false with errno set.
  [[nodiscard]] bool open() noexcept;
  void close() noexcept;
  bool isOpen() const noexcept { return fd_ >= 0; }
  // All n bytes, or false with errno set (EIO for a short transfer, EBADF when not open).
  [[nodiscard]] bool read(uintptr_t at, void* out, size_t n) const noexcept;
  [[nodiscard]] bool write(uintptr_t at, const void* bytes, size_t n) const noexcept;

 private:
  int fd_ = -1;
};

}  // namespace patchcall::detail

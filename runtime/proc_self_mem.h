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

// qemu-user keeps running its translation of code the kernel wrote behind its back (through
// /proc/self/mem) until the page's protection gains PROT_WRITE: then it drops the page's
// translations. Text that is not the arena's (foreign sites, AOT keys and calls) cannot be
// remapped like the arena's RX view (its contents are the file's or private), so the pages of
// [rx, rx + n) get PROT_WRITE added and taken away again. Emulator only (PATCHCALL_SYNC=
// emulator-remap, never chosen on hardware); best effort: a failure leaves stale translations,
// which the emulator tests would see.
void dropEmulatorTranslations(uintptr_t rx, size_t n) noexcept;

}  // namespace patchcall::detail

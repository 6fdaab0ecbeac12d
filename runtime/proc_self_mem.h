// patchcall — /proc/self/mem: the process's own memory as a file. A write reaches text that
// stays read-execute (the kernel writes with FOLL_FORCE, copying a private file page once); a
// read never faults on a mapping that is gone.
//
// A descriptor belongs to the process that opened it (ProcessDescriptor): a fork child's
// inherited one still names the parent's memory. The child handlers close it
// (closeInherited); every member treats another process's descriptor as closed, and a child
// reopens before its first access (TextWriter for foreign sites, aot::AotTextWriter for
// compiled text).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "process_descriptor.h"

namespace patchcall::detail {

class ProcSelfMem {
 public:
  // Opens (or reopens) it read-write in this process; false with errno set.
  [[nodiscard]] bool open() noexcept;
  void close() noexcept { fd_.close(); }  // this process's descriptor; another process's is left alone
  bool isOpen() const noexcept { return fd_.openHere(); }
  // From the fork child's handler (ProcessDescriptor::closeInherited): this object goes on
  // naming the parent's descriptor, which isOpen() refuses.
  void closeInherited(pid_t parent) const noexcept { fd_.closeInherited(parent); }
  // All n bytes, or false with errno set (EIO for a short transfer, EBADF when not open here).
  [[nodiscard]] bool read(uintptr_t at, void* out, size_t n) const noexcept;
  [[nodiscard]] bool write(uintptr_t at, const void* bytes, size_t n) const noexcept;

 private:
  ProcessDescriptor fd_;
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

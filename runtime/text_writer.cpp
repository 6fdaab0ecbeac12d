// patchcall — TextWriter (see text_writer.h).
#include "text_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "fork_reset.h"
#include "test_hooks.h"

namespace patchcall::detail {

Status TextWriter::open(SyncMethod method) {
  PATCHCALL_TRY(sync_.init(method, [](void* arena) { return static_cast<CodeArena*>(arena)->remapRx(); }, &arena_));
  (void)procMem_.open();  // checked where foreign sites need it
  return Status::ok();
}

Status TextWriter::needForeignAccess() {
  if (!procMem_.isOpen()) (void)procMem_.open();  // a fork child's first need, or a retry
  if (!procMem_.isOpen()) return Status(Error::kUnsupportedSite, "/proc/self/mem is not writable here");
  return Status::ok();
}

PATCHCALL_FORK_PATH Status TextWriter::afterForkInChild(bool needNow, pid_t parent) noexcept {
  procMem_.closeInherited(parent);
  if (!needNow) return Status::ok();
  if (!procMem_.open()) return Status(Error::kMapFailed, "cannot reopen /proc/self/mem for the child's foreign sites");
  return Status::ok();
}

void TextWriter::sharedArenaWritten() noexcept {
  std::fprintf(stderr, "patchcall bug: code written into an arena still shared with a fork relative "
                       "(a mutating path without TextWriter::ownCode)\n");
  std::abort();
}

bool TextWriter::readForeign(uintptr_t rx, void* out, size_t n) const noexcept { return procMem_.read(rx, out, n); }

bool TextWriter::writeForeign(uintptr_t rx, const void* bytes, size_t n) const noexcept {
  if (!procMem_.write(rx, bytes, n)) return false;
  if (sync_.method() == SyncMethod::kEmulatorRemap) dropEmulatorTranslations(rx, n);
  return true;
}

bool TextWriter::write(uintptr_t rx, const void* bytes, size_t n) {
  if (!arena_.contains(reinterpret_cast<void*>(rx))) {
    // Foreign code: the kernel writes it (not a shared mapping, nor an unmapped one: EIO).
    if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->foreignWritesBeforeFailure.load() >= 0) {
      if (hooks->foreignWritesBeforeFailure.fetch_sub(1) == 0) {
        hooks->foreignWritesBeforeFailure.store(-1);
        errno = EIO;
        return false;
      }
    }
    return writeForeign(rx, bytes, n);
  }
  checkOwned();
  uint8_t* rw = arena_.toRw(reinterpret_cast<void*>(rx));
  if (n == 1) {
    __atomic_store_n(rw, *static_cast<const uint8_t*>(bytes), __ATOMIC_RELAXED);
  } else if (n == 2 && rx % 2 == 0) {
    uint16_t v;
    std::memcpy(&v, bytes, 2);
    __atomic_store_n(reinterpret_cast<uint16_t*>(rw), v, __ATOMIC_RELAXED);
  } else if (n == 8 && rx % 8 == 0) {
    uint64_t v;
    std::memcpy(&v, bytes, 8);
    __atomic_store_n(reinterpret_cast<uint64_t*>(rw), v, __ATOMIC_RELAXED);
  } else if (n == 4 && rx % 4 == 0) {
    uint32_t v;
    std::memcpy(&v, bytes, 4);
    __atomic_store_n(reinterpret_cast<uint32_t*>(rw), v, __ATOMIC_RELAXED);
  } else {
    std::memcpy(rw, bytes, n);
  }
  arch::codeWritten(rx, n);  // A64: clean and invalidate the caches for the range; x86: nothing
  return true;
}

}  // namespace patchcall::detail

// patchcall — the code arena: one region mapped twice through a memfd.
//
// The RX view is what threads execute; the RW view is the only way to write code. No page
// is ever writable and executable through one mapping (W^X). The RX view is placed next to
// the executable's text when the address space allows, so JIT code reaches C++ functions with
// a plain direct call. Where only part of the arena can (A64's BL reaches +-128 MiB, less than
// the default 256 MiB arena), that part is handed out first: allocation starts at the end
// nearest the text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include "metadata.h"
#include "patchcall/status.h"

namespace patchcall::detail {

class CodeArena {
 public:
  static Result<std::unique_ptr<CodeArena>> create(size_t size, const void* hint);
  ~CodeArena();
  CodeArena(const CodeArena&) = delete;
  CodeArena& operator=(const CodeArena&) = delete;

  uint8_t* rxBase() const noexcept { return rx_; }
  uint8_t* rwBase() const noexcept { return rw_; }
  size_t size() const noexcept { return size_; }
  bool contains(const void* p) const noexcept {
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(rx_);
    return a >= b && a < b + size_;
  }
  uint8_t* toRw(const void* rx) const noexcept {
    return rw_ + (static_cast<const uint8_t*>(rx) - rx_);
  }

  // 64-byte aligned RX memory, int3-filled. kArenaExhausted when no range fits.
  Result<uint8_t*> allocate(size_t size);
  // Fills the range with int3 (arch::kFillByte) and returns it to the free list.
  void release(uint8_t* rx, size_t size);
  size_t used() const;

  // fork(): the parent, with the arena locked (lockForFork), copies every byte ever handed
  // out into a new memfd before fork() (prepareForkCopy); the child maps that copy over both
  // views at the same addresses (adoptForkCopy), the parent closes it (dropForkCopy). The copy
  // is made before the parent can write again, so the child sees one consistent moment.
  void lockForFork() { mutex_.lock(); }
  void unlockForFork() { mutex_.unlock(); }
  Status prepareForkCopy();
  Status adoptForkCopy() noexcept;  // child
  void resetLockAfterFork() noexcept { new (&mutex_) std::mutex(); }  // child: held by prepare
  void dropForkCopy() noexcept;     // parent
  // The byte at RX address `rx` in the copy prepareForkCopy made (0xFF if it cannot be read).
  uint8_t forkCopyByte(uintptr_t rx) const noexcept;

  // Maps the RX view again over itself from the memfd (same address, same pages): an emulator
  // (qemu-user) drops its translations of the range. 0 or errno. SyncMethod::kEmulatorRemap.
  int remapRx() noexcept;

  int64_t distanceFromText() const noexcept { return distanceFromText_; }
  // Bytes of the arena, counted from the end handed out first, from which a direct call
  // reaches all of the executable's text; nearText: all of it.
  size_t directReach() const noexcept { return directReach_; }
  bool nearText() const noexcept { return directReach_ == size_; }

 private:
  CodeArena() = default;
  static size_t roundUp(size_t n) { return (n + 63) & ~size_t{63}; }

  int fd_ = -1;
  uint8_t* rx_ = nullptr;
  uint8_t* rw_ = nullptr;
  size_t size_ = 0;
  int64_t distanceFromText_ = 0;
  size_t directReach_ = 0;
  bool downward_ = false;  // first fit from the top: the arena lies below the text, only its top reaches

  mutable std::mutex mutex_;
  MiMap<size_t, size_t> free_;  // offset -> length, coalesced
  size_t used_ = 0;
  size_t touchedBegin_ = SIZE_MAX, touchedEnd_ = 0;  // bytes outside were never handed out
  int forkFd_ = -1;     // the child's copy, between prepareForkCopy and adopt/drop
};

// A bump pool of fixed-size slots carved from arena chunks (trampolines, veneers); its
// chunks let target validation tell the pool's memory from code.
struct SlotPool {
  uintptr_t next = 0, end = 0;
  uintptr_t lowest = UINTPTR_MAX, highest = 0;  // bounds of every chunk: a quick "no"
  MiVector<std::pair<uintptr_t, uintptr_t>> chunks;  // [begin, end)
  bool contains(uintptr_t p) const noexcept {
    if (p < lowest || p >= highest) return false;
    for (auto& c : chunks) if (p >= c.first && p < c.second) return true;
    return false;
  }
  Result<uintptr_t> take(CodeArena& arena, size_t slotSize);
};

// Bounds of the main executable's text (from /proc/self/maps), for placement and range checks.
struct TextRange {
  uintptr_t begin = 0, end = 0;
};
TextRange executableText();

}  // namespace patchcall::detail

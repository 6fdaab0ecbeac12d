// patchcall — the code arena: one region mapped twice through a memfd.
//
// The RX view is what threads execute; the RW view is the only way to write code. No page
// is ever writable and executable through one mapping (W^X). The RX view is placed next to
// the executable's text when the address space allows, so JIT code reaches C++ functions with
// a plain direct call. Where only part of the arena can (A64's BL reaches +-128 MiB, less than
// the default 256 MiB arena), that part is handed out first: allocation starts at the end
// nearest the text. One private page sits right above the RX view: the poll flag's (data,
// written by grace periods, so it is never shared with a fork relative).
//
// After fork() parent and child go on sharing the memfd's pages (no copy on the way into the
// child) until one of them first writes code: that write is preceded by unshare(), which
// copies the used bytes into a new memfd and maps it over both views at the same addresses.
// A shared arena is never written (see unshare for who may call what), so each process's
// code stays as it was at the fork until it changes it itself.
#pragma once

#include <atomic>
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
  // `lock`: its allocation lock, held across fork() (fork_locks.h).
  static Result<std::unique_ptr<CodeArena>> create(size_t size, const void* hint, std::mutex& lock);
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

  // The poll flag: one byte on the private page above the RX view, within a direct
  // reference (rel32, ADRP) of every arena byte. Zero-initialised.
  volatile uint8_t* pollFlag() const noexcept { return rx_ + size_; }
  static constexpr size_t kFlagPageSize = 4096;

  // 64-byte aligned RX memory, int3-filled. kArenaExhausted when no range fits; kForkedChild
  // if the arena is still shared (a caller that forgot unshare: see there).
  Result<uint8_t*> allocate(size_t size);
  // Fills the range with int3 (arch::kFillByte) and returns it to the free list. In a shared
  // arena the fill waits for unshare (the bytes are dead in both processes).
  void release(uint8_t* rx, size_t size);
  // Fills freed bytes outside the free list (a veneer slot) with int3, as release does.
  void fill(uintptr_t rx, size_t size) noexcept;
  size_t used() const;

  // fork(). Before it, with the arena locked (lockForFork), the parent either marks the arena
  // shared (markSharedForFork: both processes keep the pages until each one's first write) or,
  // when bytes handed out may be written outside any lock (an outstanding code reservation),
  // copies every byte ever handed out into a new memfd (prepareForkCopy), which the child maps
  // over both views at the same addresses (adoptForkCopy) and the parent closes (dropForkCopy).
  void lockForFork() { mutex_.lock(); }
  void unlockForFork() { mutex_.unlock(); }
  void markSharedForFork() noexcept { shared_.store(true, std::memory_order_relaxed); }
  Status prepareForkCopy();
  Status adoptForkCopy() noexcept;  // child
  void dropForkCopy() noexcept;     // parent
  // A fork child whose copy could not be made (or mapped) still maps the parent's code: it
  // must never write it. Frees are recorded as in a shared arena, never filled, and every
  // write refuses with `why` (writeRefusal), the teardown's included.
  void refuseWritesInChild(Status why) noexcept {
    unwritable_ = std::move(why);
    shared_.store(true, std::memory_order_relaxed);
    broken_.store(true, std::memory_order_release);
  }

  // True from a fork until this process's first code write (unshare). It turns true only
  // inside fork's prepare handler (which holds every lock) and false only in unshare (under
  // the text mutex): a caller holding the text mutex, or the reservations lock and seeing
  // false, can rely on what it read.
  bool shared() const noexcept { return shared_.load(std::memory_order_acquire); }
  // Gives this process its own copy of the code (a new memfd holding the used bytes, mapped
  // over both views: threads running the code see the same bytes throughout) and applies the
  // fills release() deferred. The caller holds the text mutex, so no code write runs; the
  // arena lock is taken here. A failed copy leaves the arena shared (retried by the next
  // write); a failed re-map leaves it unwritable: every later call returns the same error.
  Status unshare();
  uint64_t unshares() const noexcept { return unshares_.load(std::memory_order_relaxed); }
  // Why no code may be written any more (a re-map failed half-way), or ok.
  Status writeRefusal() const {
    return broken_.load(std::memory_order_acquire) ? unwritable_ : Status::ok();
  }

  // Maps the RX view again over itself from the memfd (same address, same pages): an emulator
  // (qemu-user) drops its translations of the range. 0 or errno. SyncMethod::kEmulatorRemap.
  int remapRx() noexcept;

  int64_t distanceFromText() const noexcept { return distanceFromText_; }
  // Bytes of the arena, counted from the end handed out first, from which a direct call
  // reaches all of the executable's text; nearText: all of it.
  size_t directReach() const noexcept { return directReach_; }
  bool nearText() const noexcept { return directReach_ == size_; }

 private:
  explicit CodeArena(std::mutex& lock) : mutex_(lock) {}
  static size_t roundUp(size_t n) { return (n + 63) & ~size_t{63}; }
  // A new memfd of size_ holding every byte ever handed out (the rest reads as zero), or why not.
  Result<int> copyTouched(const char* forWhom) const;
  // Both views onto `fd`, at their addresses. 0 or errno (then the views are undefined).
  int mapViews(int fd) noexcept;
  void fillLocked(size_t offset, size_t len) noexcept;  // int3 now, or at unshare if shared
  void fillNow(size_t offset, size_t len) noexcept;     // int3, made visible to instruction fetch

  int fd_ = -1;
  uint8_t* rx_ = nullptr;
  uint8_t* rw_ = nullptr;
  size_t size_ = 0;
  int64_t distanceFromText_ = 0;
  size_t directReach_ = 0;
  bool downward_ = false;  // first fit from the top: the arena lies below the text, only its top reaches

  std::mutex& mutex_;  // on the fork page (fork_locks.h)
  MiMap<size_t, size_t> free_;  // offset -> length, coalesced
  size_t used_ = 0;
  size_t touchedBegin_ = SIZE_MAX, touchedEnd_ = 0;  // bytes outside were never handed out
  int forkFd_ = -1;     // the child's copy, between prepareForkCopy and adopt/drop
  std::atomic<bool> shared_{false};  // pages shared with a fork relative: never written
  Status unwritable_;                // set once, before broken_: a re-map failed half-way
  std::atomic<bool> broken_{false};
  MiVector<std::pair<size_t, size_t>> deferredFills_;  // offset, length: filled at unshare
  std::atomic<uint64_t> unshares_{0};
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

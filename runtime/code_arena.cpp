// patchcall — code arena: placement near the text, dual mapping, first-fit allocation.
#include "code_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "proc_maps.h"

namespace patchcall::detail {
namespace {

std::string exePath() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

constexpr uintptr_t kReach = uintptr_t{1} << 31;   // rel32 reach
constexpr uintptr_t kPlacementAlign = uintptr_t{2} << 20;
constexpr uintptr_t kLowest = uintptr_t{1} << 32;  // stay clear of low memory

// Candidate RX bases within rel32 reach of the whole text, nearest first; gaps below the
// text are preferred so the brk heap above the executable keeps room to grow.
std::vector<uintptr_t> candidates(const std::vector<Mapping>& maps, TextRange text, size_t size) {
  std::vector<uintptr_t> below, above;
  if (text.begin == 0 || size >= kReach) return below;
  uintptr_t lo = text.end > kReach ? text.end - kReach + kPlacementAlign : kLowest;
  lo = std::max(lo, kLowest);
  uintptr_t hi = text.begin + kReach - size - kPlacementAlign;  // highest start allowed
  uintptr_t prevEnd = 0;
  for (size_t i = 0; i <= maps.size(); ++i) {
    uintptr_t gapBegin = prevEnd, gapEnd = i < maps.size() ? maps[i].begin : ~uintptr_t{0};
    if (i < maps.size()) prevEnd = maps[i].end;
    gapBegin = (std::max(gapBegin, lo) + kPlacementAlign - 1) & ~(kPlacementAlign - 1);
    if (gapEnd <= gapBegin || gapEnd - gapBegin < size) continue;
    uintptr_t topStart = (gapEnd - size) & ~(kPlacementAlign - 1);
    if (topStart < gapBegin) continue;
    if (topStart <= text.begin && topStart <= hi) below.push_back(topStart);
    else if (gapBegin >= text.end && gapBegin <= hi) above.push_back(gapBegin);
  }
  std::sort(below.begin(), below.end(), std::greater<>());  // nearest the text first
  std::sort(above.begin(), above.end());
  below.insert(below.end(), above.begin(), above.end());
  return below;
}

// How many bytes of [base, base + size), counted from the end nearest the text, can reach
// every byte of the text with a direct call (arch::inReach), in 64-byte steps.
size_t directReachOf(uintptr_t base, size_t size, TextRange text) {
  if (text.begin == 0 || text.end <= text.begin) return 0;
  bool below = base < text.begin;
  auto reaches = [&](size_t n) {  // the n-th byte from the near end
    uintptr_t at = below ? base + size - n : base + n - 1;
    uintptr_t insn = at & ~uintptr_t{63};
    return arch::inReach(insn, text.begin) && arch::inReach(insn, text.end - 64);
  };
  size_t lo = 0, hi = size / 64;  // reaches(64 * lo) holds (0: vacuously)
  if (!reaches(64)) return 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;
    if (reaches(64 * mid)) lo = mid;
    else hi = mid - 1;
  }
  return 64 * lo;
}

}  // namespace

TextRange executableText() {
  static const TextRange cached = [] {
    TextRange r;
    std::string exe = exePath();
    for (const Mapping& m : readMaps()) {
      if (!m.exec() || m.path != exe) continue;
      if (r.begin == 0 || m.begin < r.begin) r.begin = m.begin;
      r.end = std::max(r.end, m.end);
    }
    return r;
  }();
  return cached;
}

Result<std::unique_ptr<CodeArena>> CodeArena::create(size_t size, const void* hint, std::mutex& lock) {
  if (size < 65536 || size >= kReach) {
    return Status(Error::kInvalidArgument, "arena size must be in [64 KiB, 2 GiB), got " +
                                               std::to_string(size));
  }
  size = (size + 4095) & ~size_t{4095};
  std::unique_ptr<CodeArena> arena(new (std::nothrow) CodeArena(lock));
  if (!arena) return Status(Error::kOutOfMemory, "cannot allocate the arena descriptor");
  arena->size_ = size;
  arena->fd_ = memfd_create("patchcall-code", MFD_CLOEXEC);
  if (arena->fd_ < 0) {
    return Status(Error::kMapFailed, std::string("memfd_create: ") + std::strerror(errno));
  }
  if (ftruncate(arena->fd_, static_cast<off_t>(size)) != 0) {
    return Status(Error::kMapFailed, std::string("ftruncate(memfd): ") + std::strerror(errno));
  }

  TextRange text = executableText();
  std::vector<uintptr_t> tries;
  if (hint != nullptr) tries.push_back(reinterpret_cast<uintptr_t>(hint));
  const size_t span = size + kFlagPageSize;  // the RX view, then the poll flag's page
  std::vector<uintptr_t> near = candidates(readMaps(), text, span);
  tries.insert(tries.end(), near.begin(), near.end());

  void* rx = MAP_FAILED;
  for (uintptr_t at : tries) {
    // The span's last page lies past the memfd's end until the flag page replaces it below.
    rx = mmap(reinterpret_cast<void*>(at), span, PROT_READ | PROT_EXEC,
              MAP_SHARED | MAP_FIXED_NOREPLACE, arena->fd_, 0);
    if (rx == reinterpret_cast<void*>(at)) break;
    // A kernel before 4.17 (and qemu-user) takes MAP_FIXED_NOREPLACE as a hint and maps
    // elsewhere instead of failing: that placement is not the one tried.
    if (rx != MAP_FAILED) munmap(rx, span);
    rx = MAP_FAILED;
  }
  if (rx == MAP_FAILED) rx = mmap(nullptr, span, PROT_READ | PROT_EXEC, MAP_SHARED, arena->fd_, 0);
  if (rx == MAP_FAILED) {
    return Status(Error::kMapFailed, std::string("mmap(RX arena): ") + std::strerror(errno));
  }
  arena->rx_ = static_cast<uint8_t*>(rx);
  // Private and anonymous: fork gives the child its own flag, copied on first write.
  if (mmap(arena->rx_ + size, kFlagPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
      MAP_FAILED) {
    return Status(Error::kMapFailed, std::string("mmap(poll flag page): ") + std::strerror(errno));
  }
  void* rw = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, arena->fd_, 0);
  if (rw == MAP_FAILED) {
    return Status(Error::kMapFailed, std::string("mmap(RW alias): ") + std::strerror(errno));
  }
  arena->rw_ = static_cast<uint8_t*>(rw);

  auto base = reinterpret_cast<uintptr_t>(arena->rx_);
  arena->distanceFromText_ = static_cast<int64_t>(base) - static_cast<int64_t>(text.begin);
  arena->directReach_ = directReachOf(base, size, text);
  arena->downward_ = arena->directReach_ != 0 && arena->directReach_ < size && base < text.begin;
  arena->free_.emplace(0, size);
  return arena;
}

CodeArena::~CodeArena() {
  if (rx_ != nullptr) munmap(rx_, size_ + kFlagPageSize);
  if (rw_ != nullptr) munmap(rw_, size_);
  if (fd_ >= 0) close(fd_);
  dropForkCopy();
}

int CodeArena::remapRx() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);  // not while unshare switches the memfd
  return mmap(rx_, size_, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd_, 0) == MAP_FAILED ? errno : 0;
}

Result<uint8_t*> CodeArena::allocate(size_t size) {
  if (size == 0) return Status(Error::kInvalidArgument, "cannot allocate 0 bytes of code");
  if (size > size_) {
    return Status(Error::kArenaExhausted, std::to_string(size) + " bytes of code do not fit in an arena of " +
                                              std::to_string(size_) + " bytes");
  }
  size_t need = roundUp(size);
  std::lock_guard<std::mutex> lock(mutex_);
  if (shared_.load(std::memory_order_relaxed)) {
    return Status(Error::kForkedChild, "internal: code allocated in an arena still shared with a fork relative "
                                       "(its caller must unshare it first)");
  }
  auto handOut = [&](size_t offset) {
    used_ += need;
    touchedBegin_ = std::min(touchedBegin_, offset);
    touchedEnd_ = std::max(touchedEnd_, offset + need);
    std::memset(rw_ + offset, arch::kFillByte, need);
    return rx_ + offset;
  };
  if (downward_) {  // first fit from the top: the end of the highest range that fits
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if (it->second < need) continue;
      it->second -= need;
      size_t offset = it->first + it->second;
      if (it->second == 0) free_.erase(std::next(it).base());
      return handOut(offset);
    }
  } else {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < need) continue;
      size_t offset = it->first, rest = it->second - need;
      free_.erase(it);
      if (rest != 0) free_.emplace(offset + need, rest);
      return handOut(offset);
    }
  }
  return Status(Error::kArenaExhausted, "code arena exhausted: no free range of " +
                                            std::to_string(need) + " bytes (" +
                                            std::to_string(size_ - used_) + " bytes free in all)");
}

void CodeArena::release(uint8_t* rx, size_t size) {
  size_t offset = static_cast<size_t>(rx - rx_), len = roundUp(size);
  std::lock_guard<std::mutex> lock(mutex_);
  fillLocked(offset, len);  // a stale call into freed code traps loudly
  used_ -= len;
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + len == next->first) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += len;
      return;
    }
  }
  free_.emplace(offset, len);
}

void CodeArena::fill(uintptr_t rx, size_t size) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  fillLocked(rx - reinterpret_cast<uintptr_t>(rx_), size);
}

void CodeArena::fillLocked(size_t offset, size_t len) noexcept {
  if (!shared_.load(std::memory_order_relaxed)) return fillNow(offset, len);
  try {
    deferredFills_.emplace_back(offset, len);
  } catch (const std::bad_alloc&) {
    // The bytes stay as they were until reused (allocate fills them): dead code, not int3.
  }
}

void CodeArena::fillNow(size_t offset, size_t len) noexcept {
  std::memset(rw_ + offset, arch::kFillByte, len);
  arch::codeWritten(reinterpret_cast<uintptr_t>(rx_) + offset, len);  // A64: no core keeps the old instructions
}

size_t CodeArena::used() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_;
}

Result<uintptr_t> SlotPool::take(CodeArena& arena, size_t slotSize) {
  constexpr size_t kChunk = 4096;
  if (next + slotSize > end) {
    Result<uint8_t*> chunk = arena.allocate(kChunk);
    if (!chunk) return chunk.status();
    chunks.emplace_back(reinterpret_cast<uintptr_t>(*chunk), reinterpret_cast<uintptr_t>(*chunk) + kChunk);
    next = chunks.back().first;
    end = chunks.back().second;
    lowest = std::min(lowest, next);
    highest = std::max(highest, end);
  }
  uintptr_t s = next;
  next += slotSize;
  return s;
}

}  // namespace patchcall::detail

// Test support: code more than 4 GiB away from the arena, reachable only through a veneer.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstring>

#include "isa.h"
#include "patchcall/runtime.h"

namespace patchcall::test {

// An RX page more than 4 GiB away from the whole arena, holding returners (test::returnerBytes)
// at +0 (id 0xFA1) and +16 (id 0xFA2).
class FarCode {
 public:
  explicit FarCode(const ArenaInfo& arena) {
    auto lo = reinterpret_cast<uint64_t>(arena.rxBase), hi = lo + arena.size;
    constexpr uint64_t kGiB = uint64_t{1} << 30;
    for (uint64_t step = 8; step <= 256 && page_ == nullptr; step *= 2) {
      for (int64_t sign : {1, -1}) {
        uint64_t hint = sign > 0 ? hi + step * kGiB : lo - step * kGiB;
        if (sign < 0 && lo < step * kGiB + (uint64_t{1} << 32)) continue;
        void* p = mmap(reinterpret_cast<void*>(hint & ~uint64_t{4095}), 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED) continue;
        uint64_t a = reinterpret_cast<uint64_t>(p);
        if ((a > hi && a - hi > 4 * kGiB) || (a < lo && lo - a > 4 * kGiB)) {
          page_ = static_cast<uint8_t*>(p);
          break;
        }
        munmap(p, 4096);
      }
    }
    if (page_ == nullptr) return;
    std::memset(page_, fillByte(), 4096);
    for (int i = 0; i < 2; ++i) {
      std::vector<uint8_t> code = returnerBytes(0xFA1 + i);
      std::memcpy(page_ + 16 * i, code.data(), code.size());
    }
    mprotect(page_, 4096, PROT_READ | PROT_EXEC);
  }
  ~FarCode() {
    if (page_ != nullptr) munmap(page_, 4096);
  }
  bool ok() const { return page_ != nullptr; }
  const void* fn(int i) const { return page_ + 16 * i; }

 private:
  uint8_t* page_ = nullptr;
};

}  // namespace patchcall::test

#include "fuzz_fixtures.h"

#include <sys/mman.h>

#include <cstring>
#include <vector>

#include "fuzz_code.h"
#include "fuzz_layout.h"

namespace patchcall::fuzz {
namespace {

__attribute__((noinline)) int cxxOne() { return 1001; }
__attribute__((noinline)) int cxxTwo() { return 1002; }
__attribute__((noinline)) int cxxThree() { return 1003; }

const CxxTarget kTargets[kCxxTargets] = {{reinterpret_cast<const void*>(&cxxOne), 1001},
                                         {reinterpret_cast<const void*>(&cxxTwo), 1002},
                                         {reinterpret_cast<const void*>(&cxxThree), 1003}};

constexpr uintptr_t kGiB = uintptr_t{1} << 30;

// A fresh RW page at exactly `at`, or nullptr.
uint8_t* mapAt(uintptr_t at) {
  void* p = mmap(reinterpret_cast<void*>(at), 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (reinterpret_cast<uintptr_t>(p) != at) {
    munmap(p, 4096);
    return nullptr;
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace

const CxxTarget* cxxTargets() { return kTargets; }

const void* farFunction() {
  static const void* fn = [] {
    uintptr_t text = reinterpret_cast<uintptr_t>(&cxxOne) & ~(kGiB - 1);
    for (uintptr_t gib = 16; gib <= 4096; gib *= 2) {
      for (uintptr_t at : {text + gib * kGiB, text > gib * kGiB ? text - gib * kGiB : 0}) {
        if (at == 0) continue;
        uint8_t* p = mapAt(at);
        if (p == nullptr) continue;
        std::vector<uint8_t> returner = code::returnerBytes(kFarValue);
        std::memcpy(p, returner.data(), returner.size());
        __builtin___clear_cache(reinterpret_cast<char*>(p), reinterpret_cast<char*>(p + returner.size()));
        mprotect(p, 4096, PROT_READ | PROT_EXEC);
        return static_cast<const void*>(p);
      }
    }
    return static_cast<const void*>(nullptr);
  }();
  return fn;
}

uint8_t* ForeignCode::call() const { return page + code::kForeignCallOffset; }

void ForeignCode::reset(const void* target) {
  if (page == nullptr) return;
  mprotect(page, 4096, PROT_READ | PROT_WRITE);
  std::memset(page, code::fillByte(), 4096);
  std::vector<uint8_t> caller = code::foreignCaller(reinterpret_cast<uintptr_t>(page), target);
  std::memcpy(page, caller.data(), caller.size());
  __builtin___clear_cache(reinterpret_cast<char*>(page), reinterpret_cast<char*>(page + caller.size()));
  mprotect(page, 4096, PROT_READ | PROT_EXEC);
}

ForeignCode* foreignCode() {
  static ForeignCode code = [] {
    ForeignCode c;
    const uintptr_t step = uintptr_t{2} << 20;
    uintptr_t base = reinterpret_cast<uintptr_t>(&cxxOne) & ~(step - 1);
    // 1/16 .. 1/2 of a direct call's reach away: x86 128 MiB .. 1 GiB, A64 8 .. 64 MiB.
    const uintptr_t first = layout::directReach() / 16 / step, last = layout::directReach() / 2 / step;
    for (uintptr_t d = first; d < last && c.page == nullptr; ++d) {
      c.page = mapAt(base - d * step);
      if (c.page == nullptr) c.page = mapAt(base + d * step);
    }
    return c;
  }();
  return &code;
}

}  // namespace patchcall::fuzz

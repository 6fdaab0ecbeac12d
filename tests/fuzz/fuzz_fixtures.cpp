#include "fuzz_fixtures.h"

#include <sys/mman.h>

#include <cstring>

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
        const uint8_t code[] = {0xB8, kFarValue & 0xFF, kFarValue >> 8, 0, 0, 0xC3};  // mov eax, imm ; ret
        std::memcpy(p, code, sizeof code);
        mprotect(p, 4096, PROT_READ | PROT_EXEC);
        return static_cast<const void*>(p);
      }
    }
    return static_cast<const void*>(nullptr);
  }();
  return fn;
}

void ForeignCode::reset(const void* target) {
  if (page == nullptr) return;
  mprotect(page, 4096, PROT_READ | PROT_WRITE);
  std::memset(page, 0xCC, 4096);
  page[0] = 0x53;  // push rbx (keeps rsp 16-byte aligned at the call)
  page[1] = 0xE8;
  auto rel = static_cast<int32_t>(reinterpret_cast<intptr_t>(target) - reinterpret_cast<intptr_t>(page + 6));
  std::memcpy(page + 2, &rel, 4);
  page[6] = 0x5B;  // pop rbx
  page[7] = 0xC3;
  mprotect(page, 4096, PROT_READ | PROT_EXEC);
}

ForeignCode* foreignCode() {
  static ForeignCode code = [] {
    ForeignCode c;
    const uintptr_t step = uintptr_t{2} << 20;
    uintptr_t base = reinterpret_cast<uintptr_t>(&cxxOne) & ~(step - 1);
    for (uintptr_t d = 64; d < 512 && c.page == nullptr; ++d) {  // 128 MiB .. 1 GiB away
      c.page = mapAt(base - d * step);
      if (c.page == nullptr) c.page = mapAt(base + d * step);
    }
    return c;
  }();
  return &code;
}

}  // namespace patchcall::fuzz

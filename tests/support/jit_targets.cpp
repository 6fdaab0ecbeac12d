#include "jit_targets.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "isa.h"

namespace patchcall::test {

const void* installReturner(Runtime& rt, int id) {
  jit::Assembler a(rt);
  emitSetResult(a, id);
  emitRet(a);
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  return b.isOk() ? b->code : nullptr;
}

std::vector<const void*> installTargets(Runtime& rt, int n, int idBase) {
  jit::Assembler a(rt);
  std::vector<size_t> offsets;
  for (int i = 0; i < n; ++i) {
    a.align(asmjit::AlignMode::kCode, 16);
    offsets.push_back(a.offset());
    emitSetResult(a, idBase + i);
    emitRet(a);
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<const void*> out;
  if (!b) return out;
  for (size_t off : offsets) out.push_back(static_cast<const uint8_t*>(b->code) + off);
  return out;
}

int idOf(const void* target) { return returnerValue(target); }

std::vector<SiteCaller> installCallers(Runtime& rt, const std::vector<Key>& keys, SiteForm form) {
  jit::Assembler a(rt);
  std::vector<size_t> starts;
  for (Key k : keys) {
    a.align(asmjit::AlignMode::kCode, 16);
    starts.push_back(a.offset());
    emitEnter(a);
    Status st = jit::emitCall(a, k, form);
    EXPECT_TRUE(st.isOk()) << st.toString();
    emitLeave(a);
    emitRet(a);
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<SiteCaller> out;
  if (!b || a.sites().size() != keys.size()) return out;
  auto* base = static_cast<const uint8_t*>(b->code);
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(SiteCaller{reinterpret_cast<int (*)()>(base + starts[i]), base + a.sites()[i].offset});
  }
  return out;
}

// Written before it becomes RX, so nothing executes a half-written page.
uint8_t* mapForeignCode(const void* anchor, const void* initialTarget) {
  const uintptr_t kStep = uintptr_t{2} << 20;
  uintptr_t base = reinterpret_cast<uintptr_t>(anchor) & ~(kStep - 1);
  for (uintptr_t d = 1; d < 256; ++d) {
    for (int sign : {-1, 1}) {
      uintptr_t at = sign < 0 ? base - d * kStep : base + d * kStep;
      void* p = mmap(reinterpret_cast<void*>(at), 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) continue;
      if (reinterpret_cast<uintptr_t>(p) != at) {
        munmap(p, 4096);
        continue;
      }
      auto* code = static_cast<uint8_t*>(p);
      std::vector<uint8_t> caller = foreignCaller(at, reinterpret_cast<uintptr_t>(initialTarget));
      if (caller.empty()) {  // the target is beyond the call's reach from here
        munmap(p, 4096);
        continue;
      }
      std::memset(code, fillByte(), 4096);
      std::memcpy(code, caller.data(), caller.size());
      if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) {
        munmap(p, 4096);
        return nullptr;
      }
      return code;
    }
  }
  return nullptr;
}

ForeignPage::~ForeignPage() {
  if (code != nullptr) munmap(code, 4096);
}

}  // namespace patchcall::test

#include "jit_targets.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace patchcall::test {

namespace x86 = asmjit::x86;

const void* installReturner(Runtime& rt, int id) {
  jit::Assembler a(rt);
  a.mov(x86::eax, id);
  a.ret();
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
    a.mov(x86::eax, idBase + i);
    a.ret();
  }
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  std::vector<const void*> out;
  if (!b) return out;
  for (size_t off : offsets) out.push_back(static_cast<const uint8_t*>(b->code) + off);
  return out;
}

int idOf(const void* target) {
  int v;
  std::memcpy(&v, static_cast<const uint8_t*>(target) + 1, 4);
  return v;
}

std::vector<SiteCaller> installCallers(Runtime& rt, const std::vector<Key>& keys, SiteForm form) {
  jit::Assembler a(rt);
  std::vector<size_t> starts;
  for (Key k : keys) {
    a.align(asmjit::AlignMode::kCode, 16);
    starts.push_back(a.offset());
    a.sub(x86::rsp, 8);
    Status st = jit::emitCall(a, k, form);
    EXPECT_TRUE(st.isOk()) << st.toString();
    a.add(x86::rsp, 8);
    a.ret();
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
      const uint8_t prologue[4] = {0x48, 0x83, 0xEC, 0x08}, epilogue[5] = {0x48, 0x83, 0xC4, 0x08, 0xC3};
      std::memset(code, 0xCC, 4096);
      std::memcpy(code, prologue, 4);
      code[4] = 0xE8;
      auto rel = static_cast<int32_t>(reinterpret_cast<intptr_t>(initialTarget) - reinterpret_cast<intptr_t>(code + 9));
      std::memcpy(code + 5, &rel, 4);
      std::memcpy(code + 9, epilogue, 5);
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

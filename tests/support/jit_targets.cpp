#include "jit_targets.h"

#include <gtest/gtest.h>

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

}  // namespace patchcall::test

// patchcall — hand-encoded safepoint stub (runtime/ does not depend on asmjit).
#include "safepoint_stub.h"

#include <cstring>
#include <initializer_list>

namespace patchcall::detail {
namespace {

struct Out {
  uint8_t* p;
  size_t n = 0;
  void bytes(std::initializer_list<uint8_t> b) {
    for (uint8_t x : b) p[n++] = x;
  }
  void u32(uint32_t v) { std::memcpy(p + n, &v, 4), n += 4; }
  void u64(uint64_t v) { std::memcpy(p + n, &v, 8), n += 8; }
  // movdqu [rsp+16*i], xmm_i (store) or movdqu xmm_i, [rsp+16*i] (load)
  void xmm(int i, bool store) {
    p[n++] = 0xF3;
    if (i >= 8) p[n++] = 0x44;  // REX.R
    bytes({0x0F, static_cast<uint8_t>(store ? 0x7F : 0x6F), static_cast<uint8_t>(0x84 | ((i & 7) << 3)), 0x24});
    u32(static_cast<uint32_t>(16 * i));
  }
};

}  // namespace

size_t encodeSafepointStub(uint8_t* out, void (*slowPath)() noexcept) {
  Out o{out};
  o.bytes({0x55, 0x48, 0x89, 0xE5});                    // push rbp; mov rbp, rsp
  o.bytes({0x9C, 0x50, 0x51, 0x52, 0x56, 0x57});        // pushfq; push rax rcx rdx rsi rdi
  o.bytes({0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53});  // push r8 r9 r10 r11
  o.bytes({0x48, 0x83, 0xE4, 0xF0});                    // and rsp, -16
  o.bytes({0x48, 0x81, 0xEC}), o.u32(256);              // sub rsp, 256
  for (int i = 0; i < 16; ++i) o.xmm(i, true);
  o.bytes({0x48, 0xB8}), o.u64(reinterpret_cast<uint64_t>(slowPath));  // mov rax, slowPath
  o.bytes({0xFF, 0xD0});                                // call rax
  for (int i = 0; i < 16; ++i) o.xmm(i, false);
  o.bytes({0x48, 0x8D, 0x65, 0xB0});                    // lea rsp, [rbp-80]
  o.bytes({0x41, 0x5B, 0x41, 0x5A, 0x41, 0x59, 0x41, 0x58});  // pop r11 r10 r9 r8
  o.bytes({0x5F, 0x5E, 0x5A, 0x59, 0x58, 0x9D});        // pop rdi rsi rdx rcx rax; popfq
  o.bytes({0x5D, 0xC3});                                // pop rbp; ret
  return o.n;
}

}  // namespace patchcall::detail

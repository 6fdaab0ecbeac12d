// observe tests — JitFrame (see jit_frame.h).
#include "jit_frame.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace observe_test {

JitFrame::JitFrame(void (*callee)(int)) {
  void* m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) std::abort();
  code_ = static_cast<uint8_t*>(m);
  std::memset(code_, 0xCC, 4096);
  const uint64_t target = reinterpret_cast<uintptr_t>(callee);
  uint8_t* p = code_;
  *p++ = 0x55;                                 // push rbp
  *p++ = 0x48, *p++ = 0x89, *p++ = 0xE5;       // mov rbp, rsp
  *p++ = 0x48, *p++ = 0xB8;                    // mov rax, imm64
  std::memcpy(p, &target, 8);
  p += 8;
  *p++ = 0xFF, *p++ = 0xD0;                    // call rax
  *p++ = 0xC9;                                 // leave
  *p++ = 0xC3;                                 // ret
  size_ = static_cast<size_t>(p - code_);
}

JitFrame::~JitFrame() { munmap(code_, 4096); }

}  // namespace observe_test

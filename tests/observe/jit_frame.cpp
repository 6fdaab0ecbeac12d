// observe tests — JitFrame (see jit_frame.h).
#include "jit_frame.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "frame_code.h"

namespace observe_test {

JitFrame::JitFrame(void (*callee)(int)) {
  void* m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) std::abort();
  code_ = static_cast<uint8_t*>(m);
  std::memset(code_, kTrapFill, 4096);
  size_ = emitJitFrame(code_, reinterpret_cast<uintptr_t>(callee));
  // A64 fetches instructions through its own cache: make the bytes just written visible to it
  // (nothing to do on x86-64).
  __builtin___clear_cache(reinterpret_cast<char*>(code_), reinterpret_cast<char*>(code_ + size_));
}

JitFrame::~JitFrame() { munmap(code_, 4096); }

}  // namespace observe_test

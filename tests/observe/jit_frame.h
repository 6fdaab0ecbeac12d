// observe tests — a tiny JIT function with the declared frame-pointer layout, in RWX memory,
// that calls `callee` through a register and passes its int argument through unchanged. Its
// instructions are the host ISA's (<isa>/frame_code.h, emitJitFrame):
//
//   x86-64:  push rbp; mov rbp, rsp; mov rax, <callee>; call rax; leave; ret
//   aarch64: stp x29, x30, [sp, #-16]!; mov x29, sp; movz/movk x16, <callee>; blr x16;
//            ldp x29, x30, [sp], #16; ret
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace observe_test {

class JitFrame {
 public:
  explicit JitFrame(void (*callee)(int));
  ~JitFrame();
  JitFrame(const JitFrame&) = delete;
  JitFrame& operator=(const JitFrame&) = delete;

  void call(int arg) const { reinterpret_cast<void (*)(int)>(code_)(arg); }
  uintptr_t start() const { return reinterpret_cast<uintptr_t>(code_); }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {code_, size_}; }
  bool contains(uintptr_t pc) const { return pc >= start() && pc < start() + size_; }

 private:
  uint8_t* code_ = nullptr;
  size_t size_ = 0;
};

}  // namespace observe_test

// The switch itself on x86-64, in assembly (fiber_switch.h).
#include "../fiber_switch.h"

#include <cstdint>

asm(R"(
  .text
  .globl pcfiber_switch
  .type pcfiber_switch, @function
  .p2align 4
pcfiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pcfiber_switch, .-pcfiber_switch

  .type pcfiber_start, @function
  .p2align 4
pcfiber_start:
  movq %r12, %rdi
  subq $8, %rsp          # rsp was 8 mod 16: aligned at the call
  call *%r13
  ud2                    # entry returned: it must not
  .size pcfiber_start, .-pcfiber_start
)");

extern "C" void pcfiber_start();

namespace pcfiber {

void* init(void* lo, size_t size, void (*entry)(void*), void* arg) {
  auto top = (reinterpret_cast<uintptr_t>(lo) + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uintptr_t*>(top - 64);
  sp[0] = 0;                                            // r15
  sp[1] = 0;                                            // r14
  sp[2] = reinterpret_cast<uintptr_t>(entry);           // r13
  sp[3] = reinterpret_cast<uintptr_t>(arg);             // r12
  sp[4] = 0;                                            // rbx
  sp[5] = 0;                                            // rbp
  sp[6] = reinterpret_cast<uintptr_t>(&pcfiber_start);  // ret
  sp[7] = 0;                                            // end of the chain for unwinders
  return sp;
}

}  // namespace pcfiber

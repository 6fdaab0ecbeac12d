// The switch itself on aarch64, in assembly (fiber_switch.h): the AAPCS64 callee-saved state,
// x19-x29, x30 (where the switch returns to) and d8-d15 (the low halves of v8-v15).
#include "../fiber_switch.h"

#include <cstdint>

asm(R"(
  .text
  .globl pcfiber_switch
  .type pcfiber_switch, %function
  .p2align 4
pcfiber_switch:
  sub sp, sp, #160
  stp x19, x20, [sp, #0]
  stp x21, x22, [sp, #16]
  stp x23, x24, [sp, #32]
  stp x25, x26, [sp, #48]
  stp x27, x28, [sp, #64]
  stp x29, x30, [sp, #80]
  stp d8, d9, [sp, #96]
  stp d10, d11, [sp, #112]
  stp d12, d13, [sp, #128]
  stp d14, d15, [sp, #144]
  mov x9, sp
  str x9, [x0]
  mov sp, x1
  ldp x19, x20, [sp, #0]
  ldp x21, x22, [sp, #16]
  ldp x23, x24, [sp, #32]
  ldp x25, x26, [sp, #48]
  ldp x27, x28, [sp, #64]
  ldp x29, x30, [sp, #80]
  ldp d8, d9, [sp, #96]
  ldp d10, d11, [sp, #112]
  ldp d12, d13, [sp, #128]
  ldp d14, d15, [sp, #144]
  add sp, sp, #160
  ret
  .size pcfiber_switch, .-pcfiber_switch

  .globl pcfiber_start
  .hidden pcfiber_start
  .type pcfiber_start, %function
  .p2align 4
pcfiber_start:
  mov x0, x19
  blr x20                // sp is 16-byte aligned here (init)
  udf #0                 // entry returned: it must not
  .size pcfiber_start, .-pcfiber_start
)");

// Hidden, so its address is formed pc-relative: a GOT load of a local asm symbol resolves to
// the start of its section with this GNU as (the fiber then started in pcfiber_switch).
extern "C" __attribute__((visibility("hidden"))) void pcfiber_start();

namespace pcfiber {

// The frame pcfiber_switch pops: x19 = arg, x20 = entry, x29 = 0 (the end of the frame chain
// for unwinders), x30 = pcfiber_start; sp = the 16-aligned top once popped.
void* init(void* lo, size_t size, void (*entry)(void*), void* arg) {
  auto top = (reinterpret_cast<uintptr_t>(lo) + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uintptr_t*>(top - 160);
  for (int i = 0; i < 20; ++i) sp[i] = 0;
  sp[0] = reinterpret_cast<uintptr_t>(arg);              // x19
  sp[1] = reinterpret_cast<uintptr_t>(entry);            // x20
  sp[11] = reinterpret_cast<uintptr_t>(&pcfiber_start);  // x30
  return sp;
}

}  // namespace pcfiber

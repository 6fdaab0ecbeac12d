// A minimal stack switch for benchmarks and the stress driver: no signal mask, no FPU
// control words, just the SysV callee-saved registers (what a hand-written fiber switch in
// a runtime does). Not ucontext: glibc's swapcontext makes a sigprocmask syscall per switch.
#pragma once

#include <cstddef>

extern "C" {
// Pushes rbp, rbx, r12-r15 on the current stack, stores rsp in *save, loads `load` (an sp
// saved by a previous pcfiber_switch or made by pcfiber_init), pops and returns there.
void pcfiber_switch(void** save, void* load);
}

namespace pcfiber {

// Prepares the stack [lo, lo + size): the first pcfiber_switch to the returned sp calls
// entry(arg) on it, 16-byte aligned. entry must never return (it switches away for good).
void* init(void* lo, size_t size, void (*entry)(void*), void* arg);

}  // namespace pcfiber

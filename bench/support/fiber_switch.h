// A minimal stack switch for benchmarks and the stress driver: no signal mask, no FPU
// control words, just the ABI's callee-saved registers (what a hand-written fiber switch in
// a runtime does; support/<isa>/fiber_switch.cpp). Not ucontext: glibc's swapcontext makes a
// sigprocmask syscall per switch.
#pragma once

#include <cstddef>

extern "C" {
// Pushes the callee-saved registers (x86-64: rbp, rbx, r12-r15; aarch64: x19-x30, d8-d15) on
// the current stack, stores sp in *save, loads `load` (an sp saved by a previous
// pcfiber_switch or made by pcfiber::init), pops and returns there.
void pcfiber_switch(void** save, void* load);
}

namespace pcfiber {

// Prepares the stack [lo, lo + size): the first pcfiber_switch to the returned sp calls
// entry(arg) on it, 16-byte aligned. entry must never return (it switches away for good).
void* init(void* lo, size_t size, void (*entry)(void*), void* arg);

}  // namespace pcfiber

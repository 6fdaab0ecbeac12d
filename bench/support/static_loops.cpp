// patchcall benchmarks — the AOT loops of bm_static.cpp (issue 16), alone in their TU: they see
// neither pcbench_add1's body (callees.cpp) nor the branch slow path and the no-op hook
// (bm_static.cpp), and the harness cannot inline them.
//
// Inline vs out of line. pcbench_static_inline_loop uses PATCHCALL_STATIC_CALL, so its call
// has a marker record and the runtime rewrites that `call __patchcall_sct_pcbench_sc_add` into
// `call pcbench_add1` at registration. pcbench_static_ool_loop calls the same static call's
// trampoline by its symbol, PATCHCALL_STATIC_CALL_TRAMP(pcbench_sc_add)(acc): a direct `call`
// with no marker, so no record names it and the runtime never finds (or rewrites) it; it stays
// a call to the trampoline, whose `jmp rel32` the runtime points at pcbench_add1. That is the
// out-of-line path exactly (call + jmp), without the indirect call a function pointer to the
// trampoline would add. bm_static.cpp checks both at run time: the inline loop's call is a
// registered CALL site whose destination is pcbench_add1, the out-of-line loop's call goes to
// the trampoline and is no registered site.
#include "static_loops.h"

PATCHCALL_DEFINE_STATIC_CALL(pcbench_sc_add, pcbench_add1);
PATCHCALL_DEFINE_STATIC_KEY_FALSE(pcbench_branch_key);
PATCHCALL_DEFINE_STATIC_KEY_FALSE(pcbench_flip_key);

std::atomic<bool> pcbench_branch_flag{false};
void (*pcbench_branch_hook)(uint64_t) = &pcbench_hook_noop;

extern "C" {

__attribute__((noinline)) uint64_t pcbench_static_inline_loop(uint64_t n) {
  uint64_t acc = 0;
  do acc = PATCHCALL_STATIC_CALL(pcbench_sc_add)(acc);
  while (--n != 0);
  return acc;
}

__attribute__((noinline)) uint64_t pcbench_static_ool_loop(uint64_t n) {
  uint64_t acc = 0;
  do acc = PATCHCALL_STATIC_CALL_TRAMP(pcbench_sc_add)(acc);
  while (--n != 0);
  return acc;
}

__attribute__((noinline)) uint64_t pcbench_cxx_direct_loop(uint64_t n) {
  uint64_t acc = 0;
  do acc = pcbench_add1(acc);
  while (--n != 0);
  return acc;
}

const void* const pcbench_static_inline_loop_fn = reinterpret_cast<const void*>(&pcbench_static_inline_loop);
const void* const pcbench_static_ool_loop_fn = reinterpret_cast<const void*>(&pcbench_static_ool_loop);
const void* const pcbench_cxx_direct_loop_fn = reinterpret_cast<const void*>(&pcbench_cxx_direct_loop);

// One iteration's work: a multiply-xorshift step (a 4-5 cycle dependency chain), the value
// forced into a register by DoNotOptimize, and a compiler memory clobber. The clobber is in
// every variant: it makes the compiler reload pcbench_branch_flag and pcbench_branch_hook each
// iteration (a relaxed load could otherwise be hoisted out of the loop), which is what a real
// check inside a hot path pays; the static branch (asm goto) is never hoisted anyway.
#define PCBENCH_BRANCH_BODY(x)        \
  do {                                \
    (x) *= 0x9E3779B97F4A7C15ULL;     \
    (x) ^= (x) >> 29;                 \
    benchmark::DoNotOptimize(x);      \
    __asm__ volatile("" ::: "memory"); \
  } while (0)

__attribute__((noinline)) uint64_t pcbench_branch_nocheck_loop(uint64_t n) {
  uint64_t x = 1;
  do {
    PCBENCH_BRANCH_BODY(x);
  } while (--n != 0);
  return x;
}

__attribute__((noinline)) uint64_t pcbench_branch_disabled_loop(uint64_t n) {
  uint64_t x = 1;
  do {
    if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&pcbench_branch_key)) x = pcbench_branch_slow(x);
    PCBENCH_BRANCH_BODY(x);
  } while (--n != 0);
  return x;
}

__attribute__((noinline)) uint64_t pcbench_branch_atomic_loop(uint64_t n) {
  uint64_t x = 1;
  do {
    if (__builtin_expect(pcbench_branch_flag.load(std::memory_order_relaxed), 0)) x = pcbench_branch_slow(x);
    PCBENCH_BRANCH_BODY(x);
  } while (--n != 0);
  return x;
}

__attribute__((noinline)) uint64_t pcbench_branch_hook_loop(uint64_t n) {
  uint64_t x = 1;
  do {
    pcbench_branch_hook(x);
    PCBENCH_BRANCH_BODY(x);
  } while (--n != 0);
  return x;
}

// kStaticFlipBranches distinct branches of one key: each taken path passes its own number to
// an external function, so the compiler cannot merge them.
#define PCBENCH_FLIP1(i) \
  if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&pcbench_flip_key)) pcbench_static_sink(i);
#define PCBENCH_FLIP10(i)                                                                            \
  PCBENCH_FLIP1((i) * 10 + 0) PCBENCH_FLIP1((i) * 10 + 1) PCBENCH_FLIP1((i) * 10 + 2)                  \
  PCBENCH_FLIP1((i) * 10 + 3) PCBENCH_FLIP1((i) * 10 + 4) PCBENCH_FLIP1((i) * 10 + 5)                  \
  PCBENCH_FLIP1((i) * 10 + 6) PCBENCH_FLIP1((i) * 10 + 7) PCBENCH_FLIP1((i) * 10 + 8)                  \
  PCBENCH_FLIP1((i) * 10 + 9)
#define PCBENCH_FLIP100(i)                                                                           \
  PCBENCH_FLIP10((i) * 10 + 0) PCBENCH_FLIP10((i) * 10 + 1) PCBENCH_FLIP10((i) * 10 + 2)               \
  PCBENCH_FLIP10((i) * 10 + 3) PCBENCH_FLIP10((i) * 10 + 4) PCBENCH_FLIP10((i) * 10 + 5)               \
  PCBENCH_FLIP10((i) * 10 + 6) PCBENCH_FLIP10((i) * 10 + 7) PCBENCH_FLIP10((i) * 10 + 8)               \
  PCBENCH_FLIP10((i) * 10 + 9)
static_assert(pcbench::kStaticFlipBranches == 1000, "pcbench_flip_sites holds PCBENCH_FLIP100(0..9)");

__attribute__((noinline, used)) void pcbench_flip_sites(void) {
  PCBENCH_FLIP100(0) PCBENCH_FLIP100(1) PCBENCH_FLIP100(2) PCBENCH_FLIP100(3) PCBENCH_FLIP100(4)
  PCBENCH_FLIP100(5) PCBENCH_FLIP100(6) PCBENCH_FLIP100(7) PCBENCH_FLIP100(8) PCBENCH_FLIP100(9)
}

}  // extern "C"

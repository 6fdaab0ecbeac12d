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

// The typed C++ handle: its operator() is always inlined and leaves the same marker.
__attribute__((noinline)) uint64_t pcbench_static_handle_loop(uint64_t n) {
  constexpr auto add = PATCHCALL_STATIC_CALL_HANDLE(pcbench_sc_add);
  uint64_t acc = 0;
  do acc = add(acc);
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

// Throughput loops: kStaticTputSlots independent calls `last = f(i)` per iteration (i = 0..31, so
// no call waits for another), n iterations; returns the last call's result (32). Bound by the
// calls' issue and return throughput rather than their latency: these loops see the trampoline's
// extra jmp, and the controls (a 5-byte NOP, or a `jmp +0`, before each hard-wired call: the
// controls of BM_CallPairs) tell whether they see one more instruction at all.
#define PCBENCH_TPUT4(CALL, i) last = CALL((i) + 0); last = CALL((i) + 1); last = CALL((i) + 2); last = CALL((i) + 3);
#define PCBENCH_TPUT32(CALL)                                                                          \
  PCBENCH_TPUT4(CALL, 0) PCBENCH_TPUT4(CALL, 4) PCBENCH_TPUT4(CALL, 8) PCBENCH_TPUT4(CALL, 12)           \
  PCBENCH_TPUT4(CALL, 16) PCBENCH_TPUT4(CALL, 20) PCBENCH_TPUT4(CALL, 24) PCBENCH_TPUT4(CALL, 28)
static_assert(pcbench::kStaticTputSlots == 32, "PCBENCH_TPUT32 makes 32 calls");
#define PCBENCH_INLINE_CALL(x) PATCHCALL_STATIC_CALL(pcbench_sc_add)(x)
#define PCBENCH_OOL_CALL(x) PATCHCALL_STATIC_CALL_TRAMP(pcbench_sc_add)(x)
#define PCBENCH_NOP5_CALL(x) (__extension__({ __asm__ volatile(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00"); pcbench_add1(x); }))
#define PCBENCH_JMP_CALL(x) (__extension__({ __asm__ volatile(".byte 0xeb, 0x00"); pcbench_add1(x); }))

__attribute__((noinline)) uint64_t pcbench_static_inline_tput(uint64_t n) {
  uint64_t last = 0;
  do {
    PCBENCH_TPUT32(PCBENCH_INLINE_CALL)
  } while (--n != 0);
  return last;
}

__attribute__((noinline)) uint64_t pcbench_static_ool_tput(uint64_t n) {
  uint64_t last = 0;
  do {
    PCBENCH_TPUT32(PCBENCH_OOL_CALL)
  } while (--n != 0);
  return last;
}

__attribute__((noinline)) uint64_t pcbench_cxx_direct_tput(uint64_t n) {
  uint64_t last = 0;
  do {
    PCBENCH_TPUT32(pcbench_add1)
  } while (--n != 0);
  return last;
}

__attribute__((noinline)) uint64_t pcbench_cxx_ctl_nop5_tput(uint64_t n) {
  uint64_t last = 0;
  do {
    PCBENCH_TPUT32(PCBENCH_NOP5_CALL)
  } while (--n != 0);
  return last;
}

__attribute__((noinline)) uint64_t pcbench_cxx_ctl_jmp_tput(uint64_t n) {
  uint64_t last = 0;
  do {
    PCBENCH_TPUT32(PCBENCH_JMP_CALL)
  } while (--n != 0);
  return last;
}

const void* const pcbench_static_inline_loop_fn = reinterpret_cast<const void*>(&pcbench_static_inline_loop);
const void* const pcbench_static_handle_loop_fn = reinterpret_cast<const void*>(&pcbench_static_handle_loop);
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

// Wide branch loops: the same checks before a body of four independent one-cycle updates (so
// the loop is bound by issue, not by one dependency chain): the worst case for the NOP5 (info).
#define PCBENCH_WIDE_BODY(a, b, c, d)  \
  do {                                \
    (a) += 0x9E3779B97F4A7C15ULL;     \
    (b) ^= 0x2545F4914F6CDD1DULL;     \
    (c) += 0x632BE59BD9B4E019ULL;     \
    (d) ^= 0xBF58476D1CE4E5B9ULL;     \
    benchmark::DoNotOptimize(a);      \
    benchmark::DoNotOptimize(b);      \
    benchmark::DoNotOptimize(c);      \
    benchmark::DoNotOptimize(d);      \
    __asm__ volatile("" ::: "memory"); \
  } while (0)
#define PCBENCH_WIDE_LOOP(name, check)                                          \
  __attribute__((noinline)) uint64_t name(uint64_t n) {                         \
    uint64_t a = 1, b = 2, c = 3, d = 4;                                        \
    do {                                                                        \
      check;                                                                    \
      PCBENCH_WIDE_BODY(a, b, c, d);                                            \
    } while (--n != 0);                                                         \
    return a ^ b ^ c ^ d;                                                       \
  }
PCBENCH_WIDE_LOOP(pcbench_wide_nocheck_loop, (void)0)
PCBENCH_WIDE_LOOP(pcbench_wide_disabled_loop, if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&pcbench_branch_key)) a = pcbench_branch_slow(a))
PCBENCH_WIDE_LOOP(pcbench_wide_atomic_loop,
                  if (__builtin_expect(pcbench_branch_flag.load(std::memory_order_relaxed), 0)) a = pcbench_branch_slow(a))

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

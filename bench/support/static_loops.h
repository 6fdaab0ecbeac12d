// patchcall benchmarks — the AOT static call, static branch and static key code that
// bench/bm_static.cpp measures (issue 16). The loops live in support/static_loops.cpp, a TU of
// their own, so the harness cannot inline them and they cannot see the callees or hooks.
#pragma once

#include <atomic>
#include <cstdint>

#include "bench_support.h"
#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"

// The static call every call loop below reaches, initially (and always) pcbench_add1.
PATCHCALL_DECLARE_STATIC_CALL(pcbench_sc_add, pcbench_add1);
// The key of the one branch in pcbench_branch_disabled_loop (never enabled by the benchmarks).
PATCHCALL_DECLARE_STATIC_KEY_FALSE(pcbench_branch_key);
// The key of the kStaticFlipBranches branches in pcbench_flip_sites (BM_StaticKey_Flip).
PATCHCALL_DECLARE_STATIC_KEY_FALSE(pcbench_flip_key);

namespace pcbench {
constexpr uint64_t kStaticFlipBranches = 1000;
constexpr uint64_t kStaticTputSlots = 32;  // independent calls per iteration of the *_tput loops
}

extern "C" {
// Call loops: `acc = f(acc)` n times (n >= 1), returning acc (= n), the shape of
// pcbench::runPointerLoop and of the JIT latency loops.
uint64_t pcbench_static_inline_loop(uint64_t n);  // PATCHCALL_STATIC_CALL(pcbench_sc_add): an inline site
uint64_t pcbench_static_handle_loop(uint64_t n);  // PATCHCALL_STATIC_CALL_HANDLE(pcbench_sc_add)(acc): the same
uint64_t pcbench_static_ool_loop(uint64_t n);     // a direct call to the trampoline, no marker: no site
uint64_t pcbench_cxx_direct_loop(uint64_t n);     // a hard-wired call to pcbench_add1 compiled by GCC
// Throughput loops: kStaticTputSlots independent calls f(0..31) per iteration, n iterations;
// return the last result (32). The controls add a NOP5 or a `jmp +0` before each hard-wired call.
uint64_t pcbench_static_inline_tput(uint64_t n);
uint64_t pcbench_static_ool_tput(uint64_t n);
uint64_t pcbench_cxx_direct_tput(uint64_t n);
uint64_t pcbench_cxx_ctl_nop5_tput(uint64_t n);
uint64_t pcbench_cxx_ctl_jmp_tput(uint64_t n);  // `jmp +0` (EB 00) before each hard-wired call
// The address of each call loop's function (for the site checks of bm_static.cpp).
extern const void* const pcbench_static_inline_loop_fn;
extern const void* const pcbench_static_handle_loop_fn;
extern const void* const pcbench_static_ool_loop_fn;
extern const void* const pcbench_cxx_direct_loop_fn;

// Branch loops: n iterations of the same few dependent ALU ops (a multiply-xorshift step, its
// value through benchmark::DoNotOptimize and an asm memory clobber), returning the value; they
// differ only by the check at the top of each iteration:
uint64_t pcbench_branch_nocheck_loop(uint64_t n);   // none
uint64_t pcbench_branch_disabled_loop(uint64_t n);  // if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&pcbench_branch_key))
uint64_t pcbench_branch_atomic_loop(uint64_t n);    // if (pcbench_branch_flag.load(relaxed))
uint64_t pcbench_branch_hook_loop(uint64_t n);      // pcbench_branch_hook(x): a call through a pointer to a no-op
// Wide branch loops: the checks before four independent one-cycle updates (issue-bound, info).
uint64_t pcbench_wide_nocheck_loop(uint64_t n);
uint64_t pcbench_wide_disabled_loop(uint64_t n);
uint64_t pcbench_wide_atomic_loop(uint64_t n);
// The slow path of the checked loops (defined in bm_static.cpp: the loops cannot see it).
uint64_t pcbench_branch_slow(uint64_t x);
void pcbench_hook_noop(uint64_t x);
void pcbench_static_sink(uint64_t i);

// The kStaticFlipBranches branches of pcbench_flip_key; never called.
void pcbench_flip_sites(void);
}

// Written only before the loops run (false; the no-op hook); read by the loops every iteration.
extern std::atomic<bool> pcbench_branch_flag;
extern void (*pcbench_branch_hook)(uint64_t);

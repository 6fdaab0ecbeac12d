// patchcall benchmarks — the retpoline baseline. This TU alone is compiled with
// -mindirect-branch=thunk -mfunction-return=keep (bench/cmake/bench_support.cmake), so the
// indirect call below becomes `call __x86_indirect_thunk_<reg>`, as in a kernel or a
// Spectre-v2-hardened runtime.
#include <cstdint>

extern "C" __attribute__((noinline)) uint64_t pcbench_run_retpoline_loop(uint64_t (*fn)(uint64_t), uint64_t n) {
  uint64_t acc = 0;
  do acc = fn(acc);
  while (--n != 0);
  return acc;
}

// patchcall benchmarks — C++ call loops with the shape of the JIT loops (acc = f(acc), n
// times). This TU sees neither the callees' bodies nor the Callee implementation.
#include "bench_support.h"

namespace pcbench {

__attribute__((noinline)) uint64_t runPointerLoop(CallTarget fn, uint64_t n) {
  uint64_t acc = 0;
  do acc = fn(acc);
  while (--n != 0);
  return acc;
}

__attribute__((noinline)) uint64_t runVirtualLoop(Callee& callee, uint64_t n) {
  uint64_t acc = 0;
  do acc = callee.call(acc);
  while (--n != 0);
  return acc;
}

__attribute__((noinline)) uint64_t runStaticCallLoop(const patchcall::StaticCall<uint64_t(uint64_t)>& call, uint64_t n) {
  uint64_t acc = 0;
  do acc = call(acc);
  while (--n != 0);
  return acc;
}

__attribute__((noinline)) uint64_t readerWork(uint64_t seed) {
  // ~100 dependent multiply-xorshift steps: a few hundred ns of register-only work.
  uint64_t x = seed | 1;
  for (int i = 0; i < 100; ++i) {
    x ^= x >> 12;
    x *= 0x2545F4914F6CDD1DULL;
    benchmark::DoNotOptimize(x);
  }
  return x;
}

}  // namespace pcbench

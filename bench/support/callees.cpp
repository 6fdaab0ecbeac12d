// patchcall benchmarks — the callees, alone in their TU so no caller can inline or
// devirtualize them.
#include "bench_support.h"

extern "C" __attribute__((noinline)) uint64_t pcbench_add1(uint64_t x) { return x + 1; }
extern "C" __attribute__((noinline)) uint64_t pcbench_add2(uint64_t x) { return x + 2; }

namespace pcbench {
namespace {
struct AddOne final : Callee {
  uint64_t call(uint64_t x) override { return x + 1; }
};
}  // namespace

Callee& addOneCallee() {
  static AddOne callee;
  return callee;
}

}  // namespace pcbench

// Uses only installed headers: a runtime, a StaticCall called from C++, JIT code with a
// patchable site (so asmjit comes through the package config too), one update.
#include <cstdio>

#include <patchcall/jit.h>
#include <patchcall/static_call.h>

namespace {
int twice(int x) { return 2 * x; }
int thrice(int x) { return 3 * x; }

int fail(const char* what, const patchcall::Status& s) {
  std::fprintf(stderr, "consumer: %s: %s\n", what, s.toString().c_str());
  return 1;
}
}  // namespace

int main() {
  using namespace patchcall;
  Result<Runtime> rt = Runtime::create();
  if (!rt) return fail("Runtime::create", rt.status());
  Result<StaticCall<int(int)>> times = StaticCall<int(int)>::create(*rt, &twice, "times");
  if (!times) return fail("StaticCall::create", times.status());

  jit::Assembler a(*rt);  // int f(int x): sub rsp,8 ; call <times> ; add rsp,8 ; ret
  a.sub(asmjit::x86::rsp, 8);
  if (Status s = jit::emitCall(a, times->key()); !s) return fail("emitCall", s);
  a.add(asmjit::x86::rsp, 8);
  a.ret();
  Result<Blob> blob = jit::install(a);
  if (!blob) return fail("install", blob.status());
  auto jitTimes = reinterpret_cast<int (*)(int)>(blob.value().code);

  int before = (*times)(7), jitBefore = jitTimes(7);
  if (auto old = times->update(&thrice); !old) return fail("update", old.status());
  int after = (*times)(7), jitAfter = jitTimes(7);
  std::printf("consumer: before %d/%d, after %d/%d\n", before, jitBefore, after, jitAfter);
  return before == 14 && jitBefore == 14 && after == 21 && jitAfter == 21 ? 0 : 1;
}

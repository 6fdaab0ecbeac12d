// patchcall quick start (C++): JIT code calls square() through a patchable site; the
// runtime retargets the site while the code runs, then retires code nobody runs any more.
// Built with -Werror -Wall -Wextra by ctest (Example_Quickstart); the README quotes it.
#include <patchcall/jit.h>
#include <patchcall/static_call.h>

#include <cstdio>

using namespace patchcall;

static int slowSquare(int x) { return x * x; }          // e.g. the interpreter's version
static int fastSquare(int x) { return x * x + 0 * x; }  // e.g. compiled code; same result
static int cube(int x) { return x * x * x; }             // a different definition

// JIT code for `int f(int x) { poll; return key(x); }`.
static Result<Blob> emitCaller(Runtime& rt, Key key) {
  jit::Assembler a(rt);  // an asmjit x86::Assembler that records sites
  a.sub(asmjit::x86::rsp, 8);
  if (Status s = jit::emitSafepointPoll(a); !s.isOk()) return s;  // cmp byte [rip+flag],0 ; jne slow
  if (Status s = jit::emitCall(a, key); !s.isOk()) return s;      // E8 rel32, rel32 4-byte aligned
  a.add(asmjit::x86::rsp, 8);
  a.ret();
  return jit::install(a);  // relocate, copy via the RW alias, bind the site to the key
}

static int fail(const char* what, const Status& s) {
  std::fprintf(stderr, "quickstart: %s: %s\n", what, s.toString().c_str());
  return 1;
}

int main() {
  Result<Runtime> rt = Runtime::create();  // arena near the text, membarrier registered
  if (!rt) return fail("Runtime::create", rt.status());
  Result<StaticCall<int(int)>> sq = StaticCall<int(int)>::create(*rt, &slowSquare, "square");
  if (!sq) return fail("StaticCall::create", sq.status());

  Result<ThreadScope> me = rt->registerThread("main");  // threads that run JIT code register
  if (!me) return fail("registerThread", me.status());
  Result<Blob> v1 = emitCaller(*rt, sq->key());
  if (!v1) return fail("emit", v1.status());
  auto f = reinterpret_cast<int (*)(int)>(v1->code);
  std::printf("f(7) = %d through the site, %d through the key from C++\n", f(7), (*sq)(7));

  // Tier-up: every site bound to the key (and its trampoline) follows, one cross-core sync.
  if (Result<int (*)(int)> old = sq->update(&fastSquare); !old) return fail("update", old.status());
  std::printf("f(7) = %d after the update\n", f(7));

  // Redefinition: new code calls cube(); the old blob is retired and freed after a grace
  // period in which no thread's stack points into it.
  Result<StaticCall<int(int)>> cb = StaticCall<int(int)>::create(*rt, &cube, "cube");
  if (!cb) return fail("StaticCall::create", cb.status());
  Result<Blob> v2 = emitCaller(*rt, cb->key());
  if (!v2) return fail("emit", v2.status());
  f = reinterpret_cast<int (*)(int)>(v2->code);
  if (Status s = rt->retire(*v1); !s.isOk()) return fail("retire", s);
  safepoint();  // this thread holds no reference into v1 any more
  Status freed = rt->barrier(std::chrono::milliseconds(2000));
  std::printf("f(7) = %d with the new code; old code freed: %s\n", f(7), freed.isOk() ? "yes" : "no");
  return f(7) == 343 && freed.isOk() ? 0 : fail("barrier", freed);
}

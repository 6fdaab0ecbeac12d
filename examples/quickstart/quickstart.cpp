// patchcall quick start (C++): JIT code calls square() through a patchable site; the
// runtime retargets the site while the code runs, then retires code nobody runs any more.
// Built with -Werror -Wall -Wextra by ctest (Example_Quickstart); the README quotes it.
#include <patchcall/jit.h>
#include <patchcall/static_call.h>

#include <atomic>
#include <cstdio>
#include <thread>

using namespace patchcall;

static int slowSquare(int x) { return x * x; }          // e.g. the interpreter's version
static int fastSquare(int x) { return x * x + 0 * x; }  // e.g. compiled code; same result
static int cube(int x) { return x * x * x; }             // a different definition

// JIT code for `int f(int x) { poll; return key(x); }`, in the host's instruction set.
static Result<Blob> emitCaller(Runtime& rt, Key key) {
  jit::Assembler a(rt);  // an asmjit x86::Assembler (a64::Assembler on arm64) that records sites
#if defined(__aarch64__)
  namespace a64 = asmjit::a64;
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16));  // the call clobbers the link register
  if (Status s = jit::emitSafepointPoll(a); !s.isOk()) return s;  // adrp/ldrb/cbnz on the flag
  if (Status s = jit::emitCall(a, key); !s.isOk()) return s;      // BL imm26
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16));
  a.ret(a64::x30);
#else
  a.sub(asmjit::x86::rsp, 8);
  if (Status s = jit::emitSafepointPoll(a); !s.isOk()) return s;  // cmp byte [rip+flag],0 ; jne slow
  if (Status s = jit::emitCall(a, key); !s.isOk()) return s;      // E8 rel32, rel32 4-byte aligned
  a.add(asmjit::x86::rsp, 8);
  a.ret();
#endif
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
  Result<StaticCall<int(int)>> cb = StaticCall<int(int)>::create(*rt, &cube, "cube");
  if (!sq || !cb) return fail("StaticCall::create", !sq ? sq.status() : cb.status());
  Result<Blob> v1 = emitCaller(*rt, sq->key());
  if (!v1) return fail("emit", v1.status());

  // A thread that runs JIT code registers and passes safepoints (JIT code polls itself).
  std::atomic<int (*)(int)> current{reinterpret_cast<int (*)(int)>(v1->code)};
  std::atomic<bool> stop{false};
  std::atomic<int> last{0};
  std::thread mutator([&] {
    Result<ThreadScope> me = rt->registerThread("mutator");
    if (!me) return;
    while (!stop.load()) {
      last = current.load()(7);
      safepoint();
    }
  });

  auto await = [&](int value) {  // until the mutator has seen `value` (bounded)
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (last.load() != value && std::chrono::steady_clock::now() < end) std::this_thread::yield();
  };
  await(49);

  // Tier-up while the mutator calls: every site bound to the key (and its trampoline)
  // follows, with one cross-core sync.
  if (Result<int (*)(int)> old = sq->update(&fastSquare); !old) return fail("update", old.status());
  std::printf("f(7) = %d through the site, %d through the key from C++\n", last.load(), (*sq)(7));

  // Redefinition: new code calls cube(). The old blob is retired and freed after a grace
  // period in which no registered thread's stack points into it.
  Result<Blob> v2 = emitCaller(*rt, cb->key());
  if (!v2) return fail("emit", v2.status());
  current = reinterpret_cast<int (*)(int)>(v2->code);
  await(343);
  if (Status s = rt->retire(*v1); !s.isOk()) return fail("retire", s);
  Status freed = rt->barrier(std::chrono::milliseconds(5000));
  stop = true;
  mutator.join();
  std::printf("f(7) = %d with the new code; old code freed: %s\n", last.load(), freed.isOk() ? "yes" : "no");
  return last.load() == 343 && freed.isOk() ? 0 : fail("barrier", freed);
}

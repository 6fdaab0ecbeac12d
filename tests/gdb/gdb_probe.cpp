// The program tests/cmake/gdb.cmake runs under gdb (batch mode). It calls probeTarget through
// a Direct site, a Breakpoint site and a trampoline (gdb's `break probeTarget` must stop on
// each), then retargets other Breakpoint sites with the int3 protocol while a second thread
// calls through them, so patchcall's own SIGTRAPs fire under the debugger, and finally calls
// through the first key again after retargeting it. Prints one summary line.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "patchcall/jit.h"

namespace x86 = asmjit::x86;
using patchcall::Key;
using patchcall::Result;
using patchcall::Runtime;
using patchcall::SiteForm;

extern "C" __attribute__((noinline)) int probeTarget(int x) {
  __asm__ volatile("");
  return x + 1;
}
extern "C" __attribute__((noinline)) int probeOther(int x) { return x + 2; }
extern "C" __attribute__((noinline)) int stressA() { return 1; }
extern "C" __attribute__((noinline)) int stressB() { return 2; }

namespace {

using Fn = int (*)(int);

// `sub rsp, 8 ; call <key> ; add rsp, 8 ; ret` (edi passes through to the target).
Fn caller(Runtime& rt, Key key, SiteForm form) {
  patchcall::jit::Assembler a(rt);
  a.sub(x86::rsp, 8);
  if (form == SiteForm::kBreakpoint) a.nop();  // an unaligned rel32: a real int3-protocol site
  if (!patchcall::jit::emitCall(a, key, form).isOk()) return nullptr;
  a.add(x86::rsp, 8);
  a.ret();
  Result<patchcall::Blob> b = patchcall::jit::install(a);
  return b ? reinterpret_cast<Fn>(b->code) : nullptr;
}

}  // namespace

int main() {
  patchcall::Options o;
  o.backgroundReclaimer = false;
  Result<Runtime> rt = Runtime::create(o);
  if (!rt) return std::fprintf(stderr, "create: %s\n", rt.status().toString().c_str()), 10;
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&probeTarget), "probe");
  Result<Key> stress = rt->createKey(reinterpret_cast<const void*>(&stressA), "stress");
  if (!key || !stress) return 11;
  Fn direct = caller(*rt, *key, SiteForm::kDirect);
  Fn breakpoint = caller(*rt, *key, SiteForm::kBreakpoint);
  auto tramp = reinterpret_cast<Fn>(const_cast<void*>(rt->trampoline(*key).value()));
  auto stressCall = reinterpret_cast<int (*)()>(reinterpret_cast<void*>(caller(*rt, *stress, SiteForm::kBreakpoint)));
  if (direct == nullptr || breakpoint == nullptr || stressCall == nullptr) return 12;

  int r1 = direct(10), r2 = breakpoint(20), r3 = tramp(30);

  std::atomic<bool> stop{false};
  std::atomic<long> calls{0}, wrong{0};
  std::thread t([&] {
    while (!stop.load()) {
      int v = stressCall();
      if (v != 1 && v != 2) wrong.fetch_add(1);
      calls.fetch_add(1);
    }
  });
  // Retarget until the caller thread has run into patchcall's int3 a few times (bounded).
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (calls.load() == 0 && std::chrono::steady_clock::now() < end) std::this_thread::yield();
  for (int i = 0; std::chrono::steady_clock::now() < end && (i < 300 || rt->stats().trapsEmulated < 5); ++i) {
    (void)rt->update(*stress, reinterpret_cast<const void*>(i % 2 == 0 ? &stressB : &stressA));
  }
  stop = true;
  t.join();

  if (!rt->update(*key, reinterpret_cast<const void*>(&probeOther))) return 13;
  int r4 = breakpoint(40);
  bool ok = r1 == 11 && r2 == 21 && r3 == 31 && r4 == 42 && wrong.load() == 0;
  std::printf("probe: r1=%d r2=%d r3=%d r4=%d stress calls=%ld wrong=%ld traps emulated=%llu %s\n", r1, r2, r3, r4,
              calls.load(), wrong.load(), static_cast<unsigned long long>(rt->stats().trapsEmulated),
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

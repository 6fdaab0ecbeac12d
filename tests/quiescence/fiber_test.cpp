// Fibers (ucontext) on registered stacks: a fiber parked inside a retired blob pins it until
// it has returned out of it, also when it resumes on another thread; a thread running on a
// stack mapped below its pthread stack is scanned without faults, told (scanned like any
// stack) or not told (nothing read, everything pinned, one diagnostic). The scenarios run in
// a child (EXPECT_EXIT): without stack registration they crash, and that must read as a
// failure, not take the test binary down.
#include <gtest/gtest.h>
#include <ucontext.h>


#include "emulation.h"
#include "isa.h"
#include "fiber_util.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

constexpr size_t kFiberStack = 256 * 1024;

int plainTarget() { return 1; }

std::string fail(const std::string& what, const Status& s) { return what + ": " + s.toString(); }

// makecontext starts the fiber with the callee-saved registers getcontext captured from its
// caller, and the fiber's first frame spills them onto its stack: a stale code address there
// (here: the test's own Blob) would pin a blob conservatively (x86: makecontext sets rbx itself).
// Out of line: getcontext returns twice, which would clobber the scenarios' locals.
__attribute__((noinline)) void makeFiber(ucontext_t& c, const MappedStack& stack, ucontext_t* link, void (*fn)()) {
  getcontext(&c);
  test::clearCalleeSaved(c);
  c.uc_stack.ss_sp = stack.base();
  c.uc_stack.ss_size = stack.size();
  c.uc_link = link;
  makecontext(&c, fn, 0);
}

// ---- a fiber parked inside a retired blob ----------------------------------------------------

struct ParkedFiber {
  ucontext_t fiber{}, host{};
  StackHandle stack;
  int (*entry)(ParkedFiber*) = nullptr;  // the key's trampoline: into blob B
  std::atomic<int> result{0};
  std::atomic<bool> parked{false}, finished{false};
  Status out, back;
};
ParkedFiber* gFiber = nullptr;

// Called from blob B on the fiber: tells patchcall, then swaps back to whichever thread runs it.
int parkInsideTheBlob(ParkedFiber* f) {
  f->out = switchToHomeStack();
  f->parked = true;
  swapcontext(&f->fiber, &f->host);
  return 7;  // resumed (on another thread): return into B, which adds 100
}

void fiberMain() {
  ParkedFiber* f = gFiber;
  f->result = f->entry(f);
  scrubDeadStack();  // B's stale return address must not pin it after the frame is gone
  f->back = switchToHomeStack();
  f->finished = true;
}  // uc_link: back to the host that resumed it

// int b(ParkedFiber*): calls parkInsideTheBlob and adds 100 (107 only if B was intact).
Result<Blob> emitParkingBlob(Runtime& rt) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  PATCHCALL_TRY(jit::emitFixedCall(a, reinterpret_cast<const void*>(&parkInsideTheBlob)));
  test::emitLeave(a);
  test::emitAddResult(a, 100);
  test::emitRet(a);
  return jit::install(a);
}

std::string fiberParkedInsideARetiredBlob() {
  MappedStack stack(kFiberStack);  // outlives the runtime: a registered stack stays mapped
  if (!stack.ok()) return "mmap of the fiber stack failed";
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  if (!rt) return fail("create", rt.status());
  Result<Blob> b = emitParkingBlob(*rt);
  if (!b) return fail("emit", b.status());
  Result<Key> key = rt->createKey(b->code, "fiber-entry");
  if (!key) return fail("createKey", key.status());
  std::vector<uint8_t> original = readBytes(b->code, b->size);

  ParkedFiber f;
  gFiber = &f;
  f.entry = reinterpret_cast<int (*)(ParkedFiber*)>(const_cast<void*>(rt->trampoline(*key).value()));
  Result<StackHandle> handle = rt->registerStack(stack.base(), stack.size(), "parked-fiber");
  if (!handle) return fail("registerStack", handle.status());
  f.stack = *handle;
  makeFiber(f.fiber, stack, &f.host, &fiberMain);

  TestThread first, second;  // the fiber starts on one and resumes on the other
  if (!first.registerWith(*rt, "fiber-host-1").isOk() || !second.registerWith(*rt, "fiber-host-2").isOk()) {
    return "registering the host threads failed";
  }
  // Registered threads idle between tasks hold up grace periods: keep them passing safepoints.
  std::atomic<bool> stop{false}, secondIdle{false};
  OnExit stopHosts([&] { stop = true, secondIdle = true; });
  second.post([&] { passSafepointsUntil(secondIdle); });
  Status in;
  if (!first.run([&] {
        in = switchStack(f.stack);
        swapcontext(&f.host, &f.fiber);  // back here once the fiber parked inside B
      }) ||
      !f.parked.load()) {
    return "the fiber never parked";
  }
  if (!in || !f.out) return fail("switchStack into the fiber", in) + " / out: " + f.out.toString();
  first.post([&] { passSafepointsUntil(stop); });

  if (Result<const void*> u = rt->update(*key, reinterpret_cast<const void*>(&plainTarget)); !u) {
    return fail("update", u.status());
  }
  if (Status s = rt->retire(*b); !s) return fail("retire", s);
  Status held = rt->barrier(300ms);
  RuntimeStats pinned = rt->stats();
  if (held.code() != Error::kTimeout) return "barrier returned while the parked fiber was inside B: " + held.toString();
  if (pinned.blobsPinnedByStacks == 0) return "no scan found B's return address on the parked fiber's stack";
  if (pinned.blobsFreed != 0) return "B was freed under the parked fiber";
  if (readBytes(b->code, b->size) != original) return "B's bytes changed while the fiber was parked in it";

  Status resumed;
  secondIdle = true;
  if (!second.run([&] {
        resumed = switchStack(f.stack);
        swapcontext(&f.host, &f.fiber);  // the fiber returns through B and ends here (uc_link)
      }) ||
      !f.finished.load()) {
    return "the resumed fiber never finished";
  }
  if (!resumed || !f.back) return fail("resume", resumed) + " / back: " + f.back.toString();
  if (f.result.load() != 107) return "the fiber got " + std::to_string(f.result.load()) + " from B, not 107";
  second.post([&] { passSafepointsUntil(stop); });
  if (Status s = rt->barrier(5000ms); !s) return "B stayed pinned after the fiber left it: " + s.toString() + "\n" + log.all();
  if (rt->stats().blobsFreed != 1) return "B was not freed";
  if (std::string e = notAllFilled(b->code, b->size); !e.empty()) return "freed B is not int3: " + e;
  if (Status s = rt->unregisterStack(f.stack); !s) return fail("unregisterStack", s);
  if (!log.matching("does not know").empty()) return "unexpected unknown-stack diagnostic:\n" + log.all();
  stop = true;
  return "";
}

TEST(FiberDeathTest, FiberParkedInsideARetiredBlobPinsItUntilItReturns) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(exitWith(fiberParkedInsideARetiredBlob()), ::testing::ExitedWithCode(0), "")
      << "SIGTRAP/SIGILL here: the blob was freed (filled) while a parked fiber had a frame in it";
}

// ---- a thread on a stack mapped below its pthread stack ---------------------------------------

Result<Blob> emitReturn(Runtime& rt, int value) {
  jit::Assembler a(rt);
  test::emitSetResult(a, value);
  test::emitRet(a);
  return jit::install(a);
}

struct LowStack {
  ucontext_t fiber{}, host{};
  std::atomic<const void*> pointer{nullptr};
  std::atomic<bool> entered{false}, drop{false}, release{false};
  bool told = false;
  StackHandle stack;
  Status in, out;
};
LowStack* gLow = nullptr;

// Keeps a pointer into a blob in a stack slot while passing safepoints, drops it, goes on.
__attribute__((noinline)) void lowStackMain() {
  LowStack* l = gLow;
  volatile uintptr_t held = reinterpret_cast<uintptr_t>(l->pointer.exchange(nullptr));
  l->entered = true;
  auto end = Clock::now() + 15000ms;
  while (!l->release.load() && Clock::now() < end) {
    if (l->drop.load()) held = 0;
    safepoint();
    std::this_thread::sleep_for(100us);
  }
  (void)held;
  if (l->told) l->out = switchToHomeStack();
}

std::string threadOnAStackBelowItsPthreadStack(bool told) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  if (!rt) return fail("create", rt.status());
  TestThread host;
  const char* name = told ? "told-low-host" : "untold-low-host";
  if (!host.registerWith(*rt, name).isOk()) return "register failed";
  std::pair<uintptr_t, uintptr_t> pthread{0, 0};
  host.run([&] { pthread = pthreadStack(); });
  MappedStack stack(kFiberStack, pthread.first);
  if (!stack.ok() || stack.hi() >= pthread.first) return "cannot map a stack below the pthread stack";

  Result<Blob> b = emitReturn(*rt, 3);
  if (!b) return fail("emit", b.status());
  LowStack l;
  gLow = &l;
  l.told = told;
  l.pointer = static_cast<const uint8_t*>(b->code) + 1;  // an interior pointer: pins conservatively
  if (told) {
    Result<StackHandle> h = rt->registerStack(stack.base(), stack.size(), "low-stack");
    if (!h) return fail("registerStack", h.status());
    l.stack = *h;
  }
  makeFiber(l.fiber, stack, &l.host, &lowStackMain);
  std::atomic<bool> stopHost{false};
  OnExit releaseAll([&] { l.release = true, stopHost = true; });
  host.post([&] {
    if (l.told) l.in = switchStack(l.stack);
    swapcontext(&l.host, &l.fiber);
    passSafepointsUntil(stopHost);  // back on the pthread stack
  });
  if (!waitUntil([&] { return l.entered.load(); })) return "the thread never ran on the low stack";
  if (!l.in) return fail("switchStack to the low stack", l.in);

  if (Status s = rt->retire(*b); !s) return fail("retire", s);
  Status held = rt->barrier(300ms);
  if (held.code() != Error::kTimeout) return "barrier returned while the low stack held a pointer: " + held.toString();
  if (rt->stats().blobsPinnedByStacks == 0) return "nothing was pinned";
  l.drop = true;  // told: the scan now finds nothing; untold: everything stays pinned meanwhile
  std::this_thread::sleep_for(20ms);
  Status dropped = rt->barrier(told ? 5000ms : 300ms);
  if (told && !dropped) return "the told low stack still pinned after the pointer was dropped: " + dropped.toString();
  if (!told && dropped.code() != Error::kTimeout) return "an unknown stack must pin everything: " + dropped.toString();
  std::vector<std::string> unknown = log.matching("does not know");
  if (told && !unknown.empty()) return "a told switch was reported as unknown:\n" + log.all();
  if (!told && (unknown.size() != 1 || unknown[0].find(name) == std::string::npos)) {
    return "expected one diagnostic naming '" + std::string(name) + "' on an unknown stack:\n" + log.all();
  }
  l.release = true;  // back to the pthread stack, where scans work again
  if (Status s = rt->barrier(5000ms); !s) return "still pinned back on the pthread stack: " + s.toString();
  if (!l.out) return fail("switchToHomeStack", l.out);
  if (rt->stats().blobsFreed != 1) return "the blob was not freed";
  stopHost = true;
  if (!host.waitIdle()) return "the host did not finish";
  if (told) {
    if (Status s = rt->unregisterStack(l.stack); !s) return fail("unregisterStack", s);
  }
  return "";
}

TEST(FiberDeathTest, StackBelowThePthreadStackToldIsScannedWithoutFaults) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(exitWith(threadOnAStackBelowItsPthreadStack(true)), ::testing::ExitedWithCode(0), "");
}

TEST(FiberDeathTest, StackBelowThePthreadStackNotToldPinsEverythingWithoutFaults) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(exitWith(threadOnAStackBelowItsPthreadStack(false)), ::testing::ExitedWithCode(0), "")
      << "SIGSEGV here: the scan walked from the low stack up across unmapped memory";
}

// ---- an offline thread switches into a parked fiber ----------------------------------------

struct OfflineSwitch {
  ucontext_t fiber{}, host{};
  StackHandle stack;
  std::atomic<const void*> pointer{nullptr};
  std::atomic<bool> parked{false}, resumed{false}, release{false};
  Status out, back;
};
OfflineSwitch* gOffline = nullptr;

__attribute__((noinline)) void offlineFiberMain() {
  OfflineSwitch* o = gOffline;
  volatile uintptr_t held = reinterpret_cast<uintptr_t>(o->pointer.exchange(nullptr));
  o->out = switchToHomeStack();
  o->parked = true;
  swapcontext(&o->fiber, &o->host);  // parked holding `held`
  o->resumed = true;                 // back on an offline thread: no safepoints here
  waitUntil([&] { return o->release.load(); }, 15000ms);
  held = 0;
  (void)held;
  scrubDeadStack();
  o->back = switchToHomeStack();
}

// The leader scans an offline thread's current stack from its offline sp; after an offline
// switch that must be the incoming stack's saved sp (not the sp it went offline with, which
// lies on another stack: that would read nothing and pin everything, with a diagnostic).
TEST(Fiber, OfflineThreadSwitchingIntoAParkedFiberIsScannedThere) {
  MappedStack stack(kFiberStack);
  ASSERT_TRUE(stack.ok());
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Blob> b = emitReturn(*rt, 4);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  OfflineSwitch o;
  gOffline = &o;
  o.pointer = static_cast<const uint8_t*>(b->code) + 2;
  Result<StackHandle> h = rt->registerStack(stack.base(), stack.size(), "offline-fiber");
  ASSERT_TRUE(h.isOk()) << h.status().toString();
  o.stack = *h;
  makeFiber(o.fiber, stack, &o.host, &offlineFiberMain);
  TestThread host;
  ASSERT_TRUE(host.registerWith(*rt, "offline-switcher").isOk());
  Status in, off, on;
  std::atomic<bool> stop{false}, backOnline{false};
  OnExit releaseAll([&] { o.release = true, stop = true; });
  ASSERT_TRUE(host.run([&] {
    in = switchStack(o.stack);
    swapcontext(&o.host, &o.fiber);  // the fiber parks, holding the pointer
  }));
  ASSERT_TRUE(o.parked.load() && in.isOk() && o.out.isOk()) << in.toString() << " / " << o.out.toString();
  host.post([&] {
    off = goOffline();
    in = switchStack(o.stack);  // offline: offlineSp becomes the fiber's saved sp
    swapcontext(&o.host, &o.fiber);
    on = goOnline();
    backOnline = true;
    passSafepointsUntil(stop);
  });
  ASSERT_TRUE(waitUntil([&] { return o.resumed.load(); }));
  ASSERT_TRUE(rt->retire(*b).isOk());
  Status held = rt->barrier(300ms);
  EXPECT_EQ(held.code(), Error::kTimeout) << "the offline thread's fiber holds a pointer: " << held.toString();
  EXPECT_GT(rt->stats().blobsPinnedByStacks, 0u);
  EXPECT_TRUE(log.matching("does not know").empty()) << "scanned from the wrong stack:\n" << log.all();
  o.release = true;
  ASSERT_TRUE(waitUntil([&] { return backOnline.load(); })) << "the fiber never returned to its host";
  EXPECT_TRUE(on.isOk() && o.back.isOk()) << on.toString() << " / " << o.back.toString();
  Status freed = rt->barrier(5000ms);
  EXPECT_TRUE(freed.isOk()) << freed.toString() << "\n" << log.all();
  EXPECT_TRUE(off.isOk() && in.isOk()) << off.toString() << " / " << in.toString();
  stop = true;
  ASSERT_TRUE(host.waitIdle());
  EXPECT_TRUE(rt->unregisterStack(o.stack).isOk());
}

}  // namespace

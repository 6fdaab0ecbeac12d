// The aarch64 jit layer end to end (under qemu-user here, natively on arm64 hardware): code
// emitted through patchcall::jit::Assembler (asmjit's a64 assembler) with a Direct site, a
// poll and fixed calls, installed, called, the key updated, called again; a registered reader
// runs the emitted loop (site + poll) while the key is retargeted and grace periods pass
// through its poll's slow path. No GoogleTest (as a64_smoke): prints each check, exits 1 on
// any failure.
#include <atomic>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <thread>
#include <type_traits>

#include "patchcall/jit.h"
#include "patchcall/quiescence.h"
#include "patchcall/runtime.h"

namespace {

extern "C" __attribute__((noinline)) int patchcallJitOne() { return 1; }
extern "C" __attribute__((noinline)) int patchcallJitTwo() { return 2; }
extern "C" __attribute__((noinline)) int patchcallJitAddTen(int x) { return x + 10; }

int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
void report(const patchcall::Status& s, const char* what) {
  check(s.isOk(), what);
  if (!s.isOk()) std::printf("  %s\n", s.message().c_str());
}

namespace a64 = asmjit::a64;
using patchcall::Status;

// int f(): frame; poll; w0 = <site>(); frame back; ret.
Status emitCaller(patchcall::jit::Assembler& a, patchcall::Key key) {
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16));
  a.mov(a64::x29, a64::sp);
  PATCHCALL_TRY(patchcall::jit::emitSafepointPoll(a));
  PATCHCALL_TRY(patchcall::jit::emitCall(a, key));
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16));
  a.ret(a64::x30);
  return Status::ok();
}

// int f(int x): x + 10 through a fixed call, plus what the site returns.
Status emitFixedCaller(patchcall::jit::Assembler& a, patchcall::Key key) {
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -32));
  a.mov(a64::x29, a64::sp);
  a.str(a64::x19, a64::ptr(a64::sp, 16));
  PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, reinterpret_cast<const void*>(&patchcallJitAddTen)));
  a.mov(a64::w19, a64::w0);
  PATCHCALL_TRY(patchcall::jit::emitCall(a, key, patchcall::SiteForm::kAuto));
  a.add(a64::w0, a64::w0, a64::w19);
  a.ldr(a64::x19, a64::ptr(a64::sp, 16));
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 32));
  a.ret(a64::x30);
  return Status::ok();
}

// void f(uint64_t* buf, uint64_t polls): x1-x15, x17, x18 and q31 loaded from buf, `polls`
// polls in a loop (counter x20, buffer x19: callee-saved, kept here), then the same registers
// stored at buf + kPollOut. Every value must come back whether or not a poll took its slow path.
//   buf: [x1..x15, x17, x18] slots 0-16, q31 at slots 18-19; the same again from kPollOut
constexpr uint32_t kPollRegs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18};
constexpr int32_t kPollQ = 8 * 18, kPollOut = 8 * 20;
Status emitPollingLoop(patchcall::jit::Assembler& a) {
  a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -32));
  a.mov(a64::x29, a64::sp);
  a.stp(a64::x19, a64::x20, a64::ptr(a64::sp, 16));
  a.mov(a64::x19, a64::x0);
  a.mov(a64::x20, a64::x1);
  for (size_t i = 0; i < std::size(kPollRegs); ++i) a.ldr(a64::x(kPollRegs[i]), a64::ptr(a64::x19, static_cast<int32_t>(8 * i)));
  a.ldr(a64::q31, a64::ptr(a64::x19, kPollQ));
  asmjit::Label loop = a.newLabel();
  a.bind(loop);
  PATCHCALL_TRY(patchcall::jit::emitSafepointPoll(a));
  a.subs(a64::x20, a64::x20, 1);
  a.b_ne(loop);
  for (size_t i = 0; i < std::size(kPollRegs); ++i) {
    a.str(a64::x(kPollRegs[i]), a64::ptr(a64::x19, kPollOut + static_cast<int32_t>(8 * i)));
  }
  a.str(a64::q31, a64::ptr(a64::x19, kPollOut + kPollQ));
  a.ldp(a64::x19, a64::x20, a64::ptr(a64::sp, 16));
  a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 32));
  a.ret(a64::x30);
  return Status::ok();
}

uint32_t wordAt(const void* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

}  // namespace

int main() {
  using namespace patchcall;
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  Result<Runtime> rt = Runtime::create();
  if (!rt) {
    std::printf("FAIL: Runtime::create: %s\n", rt.status().message().c_str());
    return 1;
  }
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&patchcallJitOne), "jit");
  check(key.isOk(), "createKey");
  if (!key) return 1;

  jit::Assembler a(*rt);
  static_assert(std::is_base_of_v<asmjit::a64::Assembler, jit::Assembler>);
  static_assert(std::is_same_v<jit::NativeAssembler, asmjit::a64::Assembler>);
  report(emitCaller(a, *key), "emit a caller with a poll and a Direct site");
  Result<Blob> blob = jit::install(a, "a64_jit_caller");
  report(blob.status(), "jit::install");
  if (!blob) return 1;
  auto caller = reinterpret_cast<int (*)()>(blob->code);
  const void* site = a.siteAddress(0);
  check(site != nullptr && reinterpret_cast<uintptr_t>(site) % 4 == 0, "the site is 4-byte aligned in the arena");
  check((wordAt(site) & 0xFC000000) == 0x94000000, "the site holds a BL");
  check(caller() == 1, "the site calls the initial target");
  Result<const void*> old = rt->update(*key, reinterpret_cast<const void*>(&patchcallJitTwo));
  check(old.isOk() && *old == reinterpret_cast<const void*>(&patchcallJitOne), "update returns the old target");
  check(caller() == 2, "after update the site calls the new target");
  check((wordAt(site) & 0xFC000000) == 0x94000000, "the site still holds a BL");
  (void)rt->update(*key, reinterpret_cast<const void*>(&patchcallJitOne));
  check(caller() == 1, "a second update: the first target again");

  jit::Assembler b(*rt);
  report(emitFixedCaller(b, *key), "emit a fixed call and a kAuto site");
  Result<Blob> fixed = jit::install(b);
  report(fixed.status(), "jit::install (fixed call)");
  if (fixed) {
    auto f = reinterpret_cast<int (*)(int)>(fixed->code);
    check(f(5) == 5 + 10 + 1, "fixed call + site: 16");
    (void)rt->update(*key, reinterpret_cast<const void*>(&patchcallJitTwo));
    check(f(5) == 5 + 10 + 2 && caller() == 2, "both blobs' sites follow one update");
    check(b.sites().size() == 1 && b.sites()[0].form == SiteForm::kDirect, "kAuto is Direct");
    uint32_t bl = wordAt(static_cast<const uint8_t*>(fixed->code) + 12);  // after stp, mov, str
    int64_t words = static_cast<int32_t>((bl & 0x03FFFFFF) << 6) >> 6;
    auto lands = reinterpret_cast<uintptr_t>(fixed->code) + 12 + static_cast<uintptr_t>(words * 4);
    std::printf("  the fixed call reaches its target %s\n",
                lands == reinterpret_cast<uintptr_t>(&patchcallJitAddTen) ? "directly" : "through a veneer in the blob");
  }

  jit::Assembler c(*rt);
  Status refused = jit::emitCall(c, *key, SiteForm::kToggle);
  check(refused.code() == Error::kInvalidArgument && refused.message().find("only Direct") != std::string::npos,
        "a toggle site is refused at emission, with the reason");

  // A registered reader runs the emitted caller (poll + site) in a loop; this thread retargets
  // the key and asks for grace periods, which the reader passes only through its poll's slow
  // path (it calls nothing else that announces a quiescent state).
  std::atomic<bool> stop{false}, ready{false};
  std::atomic<long> ones{0}, twos{0}, others{0};
  std::thread reader([&] {
    Result<ThreadScope> scope = rt->registerThread("jit-reader");
    ready = true;
    if (!scope) return (void)others.fetch_add(1);
    while (!stop.load(std::memory_order_relaxed)) {
      int v = caller();
      (v == 1 ? ones : v == 2 ? twos : others).fetch_add(1, std::memory_order_relaxed);
    }
  });
  while (!ready) std::this_thread::yield();
  bool ok = true;
  int grace = 0;
  for (int i = 0; i < 100 && ok; ++i) {
    ok = rt->update(*key, reinterpret_cast<const void*>(i % 2 == 0 ? &patchcallJitOne : &patchcallJitTwo)).isOk();
    if (i % 10 == 0) {
      Status s = rt->synchronize(std::chrono::milliseconds(20000));
      if (!s.isOk()) std::printf("  synchronize: %s\n", s.message().c_str());
      ok = ok && s.isOk();
      grace += s.isOk();
    }
    for (long seen = ones + twos; ones + twos < seen + 50;) std::this_thread::yield();
  }
  stop = true;
  reader.join();
  std::printf("  100 updates, %d grace periods: reader saw one %ld, two %ld, anything else %ld times\n", grace,
              ones.load(), twos.load(), others.load());
  check(ok && others == 0 && ones > 0 && twos > 0, "a polling reader while the site is retargeted and grace periods pass");
  // The registers JIT code may keep live across a poll survive its slow path: a registered
  // thread polls with known values in x1-x15, x17, x18 and q31 while this thread runs grace
  // periods, which complete only through that thread's poll slow path.
  jit::Assembler p(*rt);
  report(emitPollingLoop(p), "emit a polling loop with live registers");
  Result<Blob> loopBlob = jit::install(p, "a64_jit_polling_loop");
  report(loopBlob.status(), "jit::install (polling loop)");
  if (loopBlob) {
    alignas(16) uint64_t buf[40] = {};
    for (int i = 0; i < 20; ++i) buf[i] = 0x0101'0101'0101'0101ull * static_cast<uint64_t>(i + 1) + 0x10 * i;
    // The loop runs again (up to 50 times) until 3 grace periods have passed through its polls:
    // on a loaded machine one run of it can end before the first grace period does.
    std::atomic<bool> registered{false}, done{false}, enough{false};
    bool same = true;
    int rounds = 0;
    std::thread poller([&] {
      Result<ThreadScope> scope = rt->registerThread("jit-poller");
      registered = true;
      for (; scope && rounds < 50 && !enough.load(); ++rounds) {
        reinterpret_cast<void (*)(uint64_t*, uint64_t)>(loopBlob->code)(buf, 1'000'000);
        for (size_t i = 0; i < std::size(kPollRegs); ++i) {
          if (buf[20 + i] != buf[i]) {
            std::printf("  round %d: x%u: %#llx before, %#llx after\n", rounds, kPollRegs[i],
                        static_cast<unsigned long long>(buf[i]), static_cast<unsigned long long>(buf[20 + i]));
            same = false;
          }
        }
        for (int i = 18; i < 20; ++i) same = same && buf[20 + i] == buf[i];
      }
      done = true;  // still registered and online: only the loop's polls announced anything
    });
    while (!registered) std::this_thread::yield();
    int passed = 0;  // grace periods that began and ended while the poller was in the loop
    while (!done) {
      Status s = rt->synchronize(std::chrono::milliseconds(20000));
      if (s.isOk() && !done && ++passed >= 3) enough = true;
    }
    poller.join();
    std::printf("  %d grace periods passed while the loop polled (%d runs of it)\n", passed, rounds);
    check(same && passed > 0, "x1-x15, x17, x18 and q31 survive polls whose slow path ran");
  }
  std::printf("veneers in use: %llu\n", static_cast<unsigned long long>(rt->stats().veneers));
  std::printf("%s\n", failures == 0 ? "a64 jit: all passed" : "a64 jit: FAILED");
  return failures == 0 ? 0 : 1;
}

// The first aarch64 run of the runtime (under qemu-user here, natively on arm64 hardware):
// hand-encoded A64 code with one Direct BL site, installed with installCode, called, the key
// updated, called again; the key's trampoline the same way; a toggle site refused. No
// GoogleTest (the arm64 build needs nothing but the runtime): prints each check, exits 1 on
// the first failure.
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "patchcall/quiescence.h"
#include "patchcall/runtime.h"

namespace {

extern "C" __attribute__((noinline)) int patchcallSmokeOne() { return 1; }
extern "C" __attribute__((noinline)) int patchcallSmokeTwo() { return 2; }

int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

// caller: stp x29, x30, [sp, #-16]!; mov x29, sp; bl <site>; ldp x29, x30, [sp], #16; ret
constexpr uint32_t kCaller[] = {0xA9BF7BFD, 0x910003FD, 0x94000000, 0xA8C17BFD, 0xD65F03C0};
constexpr uint32_t kSiteOffset = 8;

// A64 encoders for the stub check below (base register x0, 64-bit, signed offsets).
constexpr uint32_t ldpX0(uint32_t t1, uint32_t t2, uint32_t off) { return 0xA9400000 | (off / 8) << 15 | t2 << 10 | 0 << 5 | t1; }
constexpr uint32_t stpX0(uint32_t t1, uint32_t t2, uint32_t off) { return 0xA9000000 | (off / 8) << 15 | t2 << 10 | 0 << 5 | t1; }
constexpr uint32_t movz(uint32_t d, uint32_t imm, uint32_t hw) { return 0xD2800000 | hw << 21 | imm << 5 | d; }
constexpr uint32_t movk(uint32_t d, uint32_t imm, uint32_t hw) { return 0xF2800000 | hw << 21 | imm << 5 | d; }

// Calls the runtime's safepoint stub from A64 code with x1-x15, x17, x18, NZCV and v31 holding
// known values (from `in`), and stores what they hold after it returns into `out`: the stub
// must give every one back. x16 is the scratch the call itself uses (as a poll's does).
//   in/out layout: [x1..x15, x17, x18, nzcv, v31.d[0], v31.d[1]] (20 slots), out = in + 20 slots
bool stubKeepsRegisters(patchcall::Runtime& rt) {
  using namespace patchcall;
  auto stub = reinterpret_cast<uint64_t>(rt.safepointStub());
  constexpr uint32_t kOut = 20 * 8;
  std::vector<uint32_t> c = {0xA9BF7BFD, 0x910003FD};  // stp x29, x30, [sp, #-16]!; mov x29, sp
  // x19 (callee-saved) is kept by this code itself: it carries x0 (the buffer) across.
  c.push_back(0xF81F0FF3);  // str x19, [sp, #-16]!
  c.push_back(0xAA0003F3);  // mov x19, x0
  for (uint32_t r = 1; r < 15; r += 2) c.push_back(ldpX0(r, r + 1, 8 * (r - 1)));  // x1..x14
  c.push_back(ldpX0(15, 17, 8 * 14));  // x15, x17
  c.push_back(ldpX0(18, 16, 8 * 16));  // x18, x16 = nzcv value
  c.push_back(0xD51B4210);             // msr nzcv, x16
  c.push_back(ldpX0(16, 0, 8 * 18));   // x16, x0 = v31 halves (x0 reloaded below)
  c.push_back(0x4E081E1F);             // mov v31.d[0], x16
  c.push_back(0x4E181C1F);             // mov v31.d[1], x0
  for (uint32_t hw = 0; hw < 4; ++hw) c.push_back((hw == 0 ? movz : movk)(16, (stub >> (16 * hw)) & 0xFFFF, hw));
  c.push_back(0xAA1303E0);  // mov x0, x19
  c.push_back(0xD63F0200);  // blr x16
  c.push_back(0xD53B4210);  // mrs x16, nzcv (before anything sets flags)
  c.push_back(0xAA1303E0);  // mov x0, x19 (x0 was given back too; the buffer again, to be sure)
  for (uint32_t r = 1; r < 15; r += 2) c.push_back(stpX0(r, r + 1, kOut + 8 * (r - 1)));
  c.push_back(stpX0(15, 17, kOut + 8 * 14));
  c.push_back(stpX0(18, 16, kOut + 8 * 16));
  c.push_back(0x4E083FF1);  // mov x17, v31.d[0]   (umov)
  c.push_back(0x4E183FF2);  // mov x18, v31.d[1]
  c.push_back(stpX0(17, 18, kOut + 8 * 18));
  c.push_back(0xF84107F3);  // ldr x19, [sp], #16
  c.push_back(0xA8C17BFD);  // ldp x29, x30, [sp], #16
  c.push_back(0xD65F03C0);  // ret
  std::vector<uint8_t> bytes(c.size() * 4);
  std::memcpy(bytes.data(), c.data(), bytes.size());
  Result<Blob> blob = rt.installCode(bytes, {});
  if (!blob) {
    std::printf("  installCode: %s\n", blob.status().message().c_str());
    return false;
  }
  uint64_t buf[40] = {};
  for (int i = 0; i < 20; ++i) buf[i] = 0x1111'0000'0000'0000ull * (i % 15 + 1) + 0x100 * i + 0x7;
  buf[17] = 0x9000'0000;  // NZCV: N and V set (bits 31..28)
  reinterpret_cast<void (*)(uint64_t*)>(blob->code)(buf);
  bool same = true;
  const char* names[20] = {"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
                           "x15", "x17", "x18", "nzcv", "v31.d[0]", "v31.d[1]"};
  for (int i = 0; i < 20; ++i) {
    if (buf[20 + i] != buf[i]) {
      std::printf("  %s: %#llx before the stub, %#llx after\n", names[i], static_cast<unsigned long long>(buf[i]),
                  static_cast<unsigned long long>(buf[20 + i]));
      same = false;
    }
  }
  return same;
}

// A reader thread calls the site in a loop while this thread retargets it `updates` times:
// every call lands on one of the two targets, and the reader sees both (under qemu only with
// the emulator sync: without it the reader keeps the first translation forever).
bool concurrentUpdates(patchcall::Runtime& rt, patchcall::Key key, int (*caller)(), int updates) {
  std::atomic<bool> stop{false};
  std::atomic<long> ones{0}, twos{0}, others{0};
  std::thread reader([&] {
    // Registered and polling, as JIT code is: retired veneers are freed (udf-filled) only after
    // every registered thread passed a safepoint.
    patchcall::Result<patchcall::ThreadScope> scope = rt.registerThread("reader");
    if (!scope) return (void)others.fetch_add(1);
    while (!stop.load(std::memory_order_relaxed)) {
      int v = caller();
      (v == 1 ? ones : v == 2 ? twos : others).fetch_add(1, std::memory_order_relaxed);
      patchcall::safepoint();
    }
  });
  bool ok = true;
  for (int i = 0; i < updates && ok; ++i) {
    auto next = reinterpret_cast<const void*>(i % 2 == 0 ? &patchcallSmokeTwo : &patchcallSmokeOne);
    ok = rt.update(key, next).isOk();
    for (long seen = ones + twos; ones + twos < seen + 50;) std::this_thread::yield();  // let the reader run
  }
  stop = true;
  reader.join();
  std::printf("  %d updates: reader saw target one %ld times, two %ld times, anything else %ld times\n", updates,
              ones.load(), twos.load(), others.load());
  return ok && others == 0 && ones > 0 && twos > 0;
}

}  // namespace

int main() {
  using namespace patchcall;
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // a hang under the emulator still shows how far it got
  Result<Runtime> rt = Runtime::create();
  if (!rt) {
    std::printf("FAIL: Runtime::create: %s\n", rt.status().message().c_str());
    return 1;
  }
  ArenaInfo arena = rt->arenaInfo();
  std::printf("arena %p, %lld bytes from the text, sync method %d\n", arena.rxBase,
              static_cast<long long>(arena.distanceFromText), static_cast<int>(arena.sync));
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&patchcallSmokeOne), "smoke");
  check(key.isOk(), "createKey");
  if (!key) return 1;

  uint8_t code[sizeof kCaller];
  std::memcpy(code, kCaller, sizeof code);
  SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> blob = rt->installCode(code, {&site, 1});
  check(blob.isOk(), "installCode with a Direct BL site");
  if (!blob) {
    std::printf("  %s\n", blob.status().message().c_str());
    return 1;
  }
  auto caller = reinterpret_cast<int (*)()>(blob->code);
  uint32_t bl;
  std::memcpy(&bl, static_cast<const uint8_t*>(blob->code) + kSiteOffset, 4);
  check((bl & 0xFC000000) == 0x94000000, "the site holds a BL");
  check(caller() == 1, "the site calls the initial target");

  Result<const void*> old = rt->update(*key, reinterpret_cast<const void*>(&patchcallSmokeTwo));
  check(old.isOk() && *old == reinterpret_cast<const void*>(&patchcallSmokeOne), "update returns the old target");
  check(caller() == 2, "after update the site calls the new target");

  Result<const void*> tramp = rt->trampoline(*key);
  check(tramp.isOk(), "trampoline");
  if (tramp) check(reinterpret_cast<int (*)()>(const_cast<void*>(*tramp))() == 2, "the trampoline jumps to the new target");
  (void)rt->update(*key, reinterpret_cast<const void*>(&patchcallSmokeOne));
  check(caller() == 1, "a second update: the site calls the first target again");
  if (tramp) check(reinterpret_cast<int (*)()>(const_cast<void*>(*tramp))() == 1, "so does the trampoline");

  // The BL reaches the C++ target directly or through a veneer (the arena may lie beyond
  // +-128 MiB of the text); either way the live veneers are counted.
  std::printf("veneers in use: %llu\n", static_cast<unsigned long long>(rt->stats().veneers));

  uint8_t longer[sizeof kCaller + 16];  // room for a whole toggle (16 bytes) after the offset
  std::memset(longer, 0, sizeof longer);
  std::memcpy(longer, kCaller, sizeof kCaller);
  SiteSpec toggle{kSiteOffset, *key, SiteForm::kToggle};
  Result<Blob> refused = rt->installCode(longer, {&toggle, 1});
  check(!refused.isOk() && refused.status().message().find("only Direct") != std::string::npos,
        "a toggle site is refused, with the reason");
  if (!refused.isOk()) std::printf("  %s\n", refused.status().message().c_str());
  check(concurrentUpdates(*rt, *key, caller, 200), "a reader calling while the site is retargeted 200 times");
  check(stubKeepsRegisters(*rt), "the safepoint stub gives back x1-x15, x17, x18, NZCV and v31");
  std::printf("%s\n", failures == 0 ? "a64 smoke: all passed" : "a64 smoke: FAILED");
  return failures == 0 ? 0 : 1;
}

// The first aarch64 run of the runtime (under qemu-user here, natively on arm64 hardware):
// hand-encoded A64 code with one Direct BL site, installed with installCode, called, the key
// updated, called again; the key's trampoline the same way; a toggle site refused. No
// GoogleTest (the arm64 build needs nothing but the runtime): prints each check, exits 1 on
// the first failure.
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  std::printf("%s\n", failures == 0 ? "a64 smoke: all passed" : "a64 smoke: FAILED");
  return failures == 0 ? 0 : 1;
}

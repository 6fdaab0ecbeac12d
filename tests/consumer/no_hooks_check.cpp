// Run by SharedRuntimeBuild against a build without PATCHCALL_TEST_HOOKS: the test-only
// toggle with a stall call before call A (patchcall::testing::emitToggleWithStall) is refused
// there, while the plain toggle is accepted. Exit 0 on success; prints what went wrong.
#include <patchcall/runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

using namespace patchcall;

static int target() { return 1; }

int main() {
  Result<Runtime> rt = Runtime::create();
  if (!rt) return std::fprintf(stderr, "create: %s\n", rt.status().toString().c_str()), 1;
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&target), "k");
  if (!key) return std::fprintf(stderr, "createKey: %s\n", key.status().toString().c_str()), 1;
  // x86-64 toggle: 66 90 (selects A) | E8 A | EB 05 | E8 B; the stall-gap form has E8 <stall> after 66 90.
  const std::vector<uint8_t> plain = {0x66, 0x90, 0xE8, 0, 0, 0, 0, 0xEB, 0x05, 0xE8, 0, 0, 0, 0, 0xC3};
  const std::vector<uint8_t> stallGap = {0x66, 0x90, 0xE8, 0, 0, 0, 0, 0xE8, 0, 0, 0, 0, 0xEB, 0x05, 0xE8, 0, 0, 0, 0, 0xC3};
  SiteSpec spec{0, *key, SiteForm::kToggle};
  Result<Blob> ok = rt->installCode(plain, {&spec, 1});
  if (!ok) return std::fprintf(stderr, "the plain toggle was refused: %s\n", ok.status().toString().c_str()), 1;
  Result<Blob> refused = rt->installCode(stallGap, {&spec, 1});
  if (refused || refused.code() != Error::kInvalidArgument) {
    std::fprintf(stderr, "the stall-gap toggle was %s in a build without test hooks\n", refused ? "accepted" : "refused with the wrong code");
    return 1;
  }
  std::printf("no-hooks build: stall-gap toggle refused (%s)\n", refused.status().toString().c_str());
  return 0;
}

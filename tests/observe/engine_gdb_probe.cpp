// observe_engine_gdb_probe: the gdb scenario through the public API only. A blob installed
// with a name and the frame-pointer layout calls observeEngineTarget through a Direct site
// (round 1); it is then retired and freed, and an unnamed blob with the same layout calls
// the target (round 2, usually from the same arena address). run_engine_gdb_probe.cmake
// breaks in the target: bt must show jit_named_caller between it and main in round 1, and
// not at all in round 2.
#include <cstdio>
#include <vector>

#include "patchcall/runtime.h"
#include "site_code.h"

using namespace patchcall;

extern "C" __attribute__((noinline)) void observeEngineTarget(int round) {
  std::printf("probe: target called, round %d\n", round);
  __asm__ volatile("" ::: "memory");
}

namespace {

const std::vector<uint8_t>& kCode = observe_test::kSiteCode;

int fail(const char* what, const Status& s) {
  std::printf("probe: %s failed: %s\n", what, s.toString().c_str());
  return 1;
}

}  // namespace

int main() {
  Result<Runtime> rt = Runtime::create();
  if (!rt) return fail("create", rt.status());
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&observeEngineTarget), "probe_key");
  if (!key) return fail("createKey", key.status());
  const SiteSpec site{observe_test::kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> named = rt->installCode(kCode, {&site, 1}, CodeInfo{"jit_named_caller", {}, FrameLayout::kFramePointer});
  if (!named) return fail("installCode", named.status());
  reinterpret_cast<void (*)(int)>(named->code)(1);

  if (Status s = rt->retire(*named); !s.isOk()) return fail("retire", s);
  if (Status s = rt->barrier(); !s.isOk()) return fail("barrier", s);
  if (rt->stats().blobsFreed != 1) return fail("free", Status(Error::kTimeout, "blob not freed"));
  Result<Blob> unnamed = rt->installCode(kCode, {&site, 1}, CodeInfo{"", {}, FrameLayout::kFramePointer});
  if (!unnamed) return fail("installCode", unnamed.status());
  std::printf("probe: second blob %s the freed one's address\n", unnamed->code == named->code ? "reuses" : "does not reuse");
  reinterpret_cast<void (*)(int)>(unnamed->code)(2);
  std::printf("probe: done\n");
  return 0;
}

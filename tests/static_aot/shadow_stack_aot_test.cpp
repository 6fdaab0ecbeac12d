// With shadow stacks (faked by PATCHCALL_TEST_FAKE_SHADOW_STACK=1, read before main: modules
// register at load) the SIGTRAP handler cannot emulate a call, so an AOT static call's inline
// calls are not made sites: they keep calling the trampoline, whose jmp (emulated as a jump)
// follows every update. A tail call (a jmp) still becomes a site. Without the variable the test
// is skipped; ctest's StaticAotShadowStack_Faked runs it with it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "patchcall/static_call_aot.h"
#include "patchcall/static_module.h"

extern "C" {
__attribute__((noinline)) long shadowAdd1(long x) { return x + 1; }
__attribute__((noinline)) long shadowTimes2(long x) { return x * 2; }
}

PATCHCALL_DEFINE_STATIC_CALL(gShadowCall, shadowAdd1);

namespace {

constexpr auto kShadow = PATCHCALL_STATIC_CALL_HANDLE(gShadowCall);

__attribute__((noinline)) long shadowCallTwice(long x) { return kShadow(kShadow(x)); }

TEST(StaticAotShadowStack, InlineCallsKeepTheirTrampoline) {
  const char* fake = std::getenv("PATCHCALL_TEST_FAKE_SHADOW_STACK");
  if (fake == nullptr || std::strcmp(fake, "1") != 0) GTEST_SKIP() << "run with PATCHCALL_TEST_FAKE_SHADOW_STACK=1";
  struct Count {
    int calls = 0, tailCalls = 0, trampolines = 0;
  } count;
  patchcall_static_sites_each(
      [](void* user, const patchcall_static_site_info* site) {
        auto* c = static_cast<Count*>(user);
        if (site->object != kShadow.object()) return 0;
        c->calls += site->kind == PATCHCALL_STATIC_SITE_CALL ? 1 : 0;
        c->tailCalls += site->kind == PATCHCALL_STATIC_SITE_TAIL_CALL ? 1 : 0;
        c->trampolines += site->kind == PATCHCALL_STATIC_SITE_TRAMPOLINE ? 1 : 0;
        return 0;
      },
      &count);
  EXPECT_EQ(count.calls, 0) << "an inline call became a site although its call cannot be emulated";
  EXPECT_EQ(count.trampolines, 1);
  EXPECT_LE(count.tailCalls, 1);
  EXPECT_EQ(shadowCallTwice(1), 3);
  ASSERT_EQ(kShadow.update(&shadowTimes2), PATCHCALL_OK) << patchcall_last_error_message();
  EXPECT_EQ(shadowCallTwice(3), 12);
  ASSERT_EQ(kShadow.update(&shadowAdd1), PATCHCALL_OK);
}

}  // namespace

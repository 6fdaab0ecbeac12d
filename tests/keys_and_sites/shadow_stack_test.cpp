// A process whose threads run with shadow stacks (CET on x86-64, the GCS on arm64): the SIGTRAP
// handler cannot emulate a call there (it would push the return address on the stack only, and
// the callee's return would fault), so the sites that need it are refused with a clear error
// instead of crashing callers mid-update; Direct and Toggle sites, which never trap, still
// work. The shadow stack is faked (testing::setFakeShadowStack): no machine here runs one.
#include <gtest/gtest.h>

#include <string>

#include "error_checks.h"
#include "isa.h"
#include "jit_targets.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

struct FakeShadowStack {
  FakeShadowStack() { testing::setFakeShadowStack(true); }
  ~FakeShadowStack() { testing::setFakeShadowStack(false); }
};

TEST(ShadowStack, BreakpointAndForeignSitesAreRefusedDirectSitesWork) {
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = test::installTargets(*rt, 2, 40);
  Result<Key> key = rt->createKey(targets[0], "shadow-stack");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  auto installBreakpointSite = [&]() -> Result<Blob> {
    jit::Assembler a(*rt);
    PATCHCALL_TRY(jit::emitCall(a, *key, SiteForm::kBreakpoint));
    return jit::install(a);
  };
  // Without shadow stacks a Breakpoint site installs (else this ISA has none: nothing to refuse).
  if (Result<Blob> plain = installBreakpointSite(); !plain) GTEST_SKIP() << "no Breakpoint sites here: " << plain.status().toString();
  FakeShadowStack fake;
  Result<Blob> blob = installBreakpointSite();
  ASSERT_FALSE(blob.isOk()) << "a Breakpoint site was installed although its call cannot be emulated";
  EXPECT_EQ(blob.status().code(), Error::kUnsupportedSite) << blob.status().toString();
  EXPECT_NE(blob.status().message().find("shadow stacks"), std::string::npos) << blob.status().toString();

  uint8_t* foreign = test::mapForeignCode(rt->arenaInfo().rxBase, targets[0]);
  ASSERT_NE(foreign, nullptr);
  test::ForeignPage page{foreign};
  Status s = rt->registerForeignSite(foreign + 4, *key);
  EXPECT_EQ(s.code(), Error::kUnsupportedSite) << s.toString();
  EXPECT_NE(s.message().find("shadow stacks"), std::string::npos) << s.toString();

  std::vector<test::SiteCaller> direct = test::installCallers(*rt, {*key}, SiteForm::kDirect);
  ASSERT_EQ(direct.size(), 1u);
  EXPECT_EQ(direct[0].fn(), 40);
  ASSERT_TRUE(rt->update(*key, targets[1]).isOk());
  EXPECT_EQ(direct[0].fn(), 41);
}

// Where foreign sites are Direct (aarch64: one aligned store of the whole BL, no trap), nothing
// is emulated, so shadow stacks do not stop them.
TEST(ShadowStack, ForeignSitesThatNeverTrapStillWork) {
  if (test::hasToggleAndBreakpointForms()) GTEST_SKIP() << "foreign sites use the breakpoint protocol here (refused above)";
  Result<Runtime> rt = Runtime::create(checks::quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<const void*> targets = test::installTargets(*rt, 2, 60);
  Result<Key> key = rt->createKey(targets[0], "shadow-stack-foreign");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  test::ForeignPage page{test::mapForeignCode(rt->arenaInfo().rxBase, targets[0])};
  ASSERT_NE(page.code, nullptr);
  FakeShadowStack fake;
  Status s = rt->registerForeignSite(page.code + test::kForeignCallOffset, *key);
  ASSERT_TRUE(s.isOk()) << s.toString();
  ASSERT_TRUE(rt->update(*key, targets[1]).isOk());
  EXPECT_EQ(reinterpret_cast<int (*)()>(page.code)(), 61);
}

}  // namespace
}  // namespace patchcall

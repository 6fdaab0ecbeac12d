// The scenario through the public API: JIT code in the code arena (W^X dual
// mapping) calls through a patchable Direct site; with the blob's frame registered, a C++
// exception thrown by the key's target reaches the C++ caller of the JIT code, and after
// update() retargets the site, backtrace() from the new target includes the JIT frame and
// the frames above it.
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "arch/arch.h"
#include "observe/frame_registration.h"
#include "patchcall/runtime.h"
#include "site_code.h"

using namespace patchcall;
using observe_test::kSiteOffset;
using observe_test::kSiteReturnOffset;
using observe_test::throwingTarget;
using observe_test::tracingTarget;

namespace {
const std::vector<uint8_t>& kCode = observe_test::kSiteCode;
std::vector<void*>& g_frames = observe_test::tracedFrames();
}  // namespace

TEST(ArenaUnwind, ExceptionAndBacktraceCrossARegisteredBlobCalledThroughASite) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&throwingTarget), "observe_target");
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  const SiteSpec site{kSiteOffset, *key, SiteForm::kDirect};
  Result<Blob> blob = rt->installCode(kCode, {&site, 1});
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();

  const auto start = reinterpret_cast<uintptr_t>(blob->code);
  const std::span<const uint8_t> installed(static_cast<const uint8_t*>(blob->code), kCode.size());
  ASSERT_TRUE(arch::checkFramePointerCode(installed, true).isOk());
  const arch::FrameCfiRange range{start, kCode.size(), true};
  Result<observe::FrameRegistration> reg =
      observe::FrameRegistration::create(arch::buildFramePointerEhFrame({&range, 1}));
  ASSERT_TRUE(reg.isOk());

  auto jit = reinterpret_cast<void (*)(int)>(blob->code);
  bool caught = false;
  try {
    jit(1);
  } catch (const std::runtime_error&) {
    caught = true;
  }
  EXPECT_TRUE(caught);

  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&tracingTarget)).isOk());
  jit(0);
  size_t at = g_frames.size();
  for (size_t i = 0; i < g_frames.size(); ++i) {
    const auto pc = reinterpret_cast<uintptr_t>(g_frames[i]);
    if (pc > start && pc <= start + kCode.size()) at = i;
  }
  ASSERT_LT(at, g_frames.size()) << "no return address inside the blob";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(g_frames[at]), start + kSiteReturnOffset);  // after the call
  EXPECT_GT(g_frames.size(), at + 2) << "backtrace stopped at the JIT frame";
}

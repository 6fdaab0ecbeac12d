// Frame registration: with the .eh_frame of the declared layout registered, a C++
// exception thrown by a callee of JIT code reaches the C++ caller of the JIT code and
// backtrace() walks through the JIT frame; without it, the throw terminates the process
// and backtrace() stops at the JIT frame.
#include <execinfo.h>
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "frame_code.h"
#include "jit_frame.h"
#include "observe/frame_registration.h"

using observe_test::JitFrame;
using patchcall::observe::FrameRegistration;

namespace {

std::vector<void*> g_trace;

__attribute__((noinline)) void throwingCallee(int arg) {
  if (arg == 1) throw std::runtime_error("thrown by a callee of JIT code");
}

__attribute__((noinline)) void tracingCallee(int) {
  g_trace.assign(64, nullptr);
  g_trace.resize(static_cast<size_t>(backtrace(g_trace.data(), 64)));
}

patchcall::Result<FrameRegistration> registerFrame(const JitFrame& code) {
  const patchcall::arch::FrameCfiRange range{code.start(), code.size(), true};
  return FrameRegistration::create(patchcall::arch::buildFramePointerEhFrame({&range, 1}));
}

// Where the JIT frame sits in g_trace, or -1.
int jitFrameIndex(const JitFrame& code) {
  for (size_t i = 0; i < g_trace.size(); ++i) {
    if (code.contains(reinterpret_cast<uintptr_t>(g_trace[i]))) return static_cast<int>(i);
  }
  return -1;
}

// Whether a frame after `from` is this test's body (backtrace_symbols names it: -rdynamic).
bool testBodyAfter(int from, const char* test) {
  char** names = backtrace_symbols(g_trace.data(), static_cast<int>(g_trace.size()));
  bool found = false;
  for (size_t i = static_cast<size_t>(from) + 1; names != nullptr && i < g_trace.size(); ++i) {
    if (std::strstr(names[i], test) != nullptr && std::strstr(names[i], "TestBody") != nullptr) found = true;
  }
  std::free(names);
  return found;
}

}  // namespace

using patchcall::Result;

TEST(FrameCfi, CodeCheckMatchesTheDeclaredLayout) {
  JitFrame code(&throwingCallee);
  EXPECT_TRUE(patchcall::arch::checkFramePointerCode(code.bytes(), true).isOk());
  EXPECT_TRUE(patchcall::arch::checkFramePointerCode(code.bytes().first(code.size() - observe_test::kEpilogueSize), false).isOk());
  EXPECT_FALSE(patchcall::arch::checkFramePointerCode(code.bytes().subspan(1), false).isOk());
  EXPECT_FALSE(patchcall::arch::checkFramePointerCode(code.bytes().first(code.size() - 1), true).isOk());
  const std::vector<uint8_t> eh = patchcall::arch::buildFramePointerEhFrame({});
  EXPECT_EQ(eh.size() % 4, 0u);
  uint32_t terminator = 1;
  std::memcpy(&terminator, eh.data() + eh.size() - 4, 4);
  EXPECT_EQ(terminator, 0u);
  EXPECT_FALSE(FrameRegistration::create({0, 0, 0, 0}).isOk());
}

TEST(Unwind, ExceptionCrossesRegisteredJitFrame) {
  JitFrame code(&throwingCallee);
  Result<FrameRegistration> reg = registerFrame(code);
  ASSERT_TRUE(reg.isOk());
  EXPECT_TRUE(reg->registered());
  std::string what;
  try {
    code.call(1);
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "thrown by a callee of JIT code");
  code.call(0);  // and the ordinary return path still works
}

TEST(Unwind, BacktraceFromCalleeWalksThroughRegisteredJitFrame) {
  JitFrame code(&tracingCallee);
  Result<FrameRegistration> reg = registerFrame(code);
  ASSERT_TRUE(reg.isOk());
  code.call(0);
  const int at = jitFrameIndex(code);
  ASSERT_GE(at, 1) << "no frame inside the JIT code";
  EXPECT_TRUE(testBodyAfter(at, "BacktraceFromCalleeWalksThroughRegisteredJitFrame"))
      << "backtrace stopped at the JIT frame (" << g_trace.size() << " frames)";
}

TEST(UnwindDeathTest, RegistrationMovesAndDeregisters) {
  JitFrame code(&throwingCallee);
  Result<FrameRegistration> reg = registerFrame(code);
  ASSERT_TRUE(reg.isOk());
  FrameRegistration moved = std::move(reg).value();
  EXPECT_TRUE(moved.registered());
  moved.reset();  // libgcc aborts on deregistering an unknown section: this must be the one
  EXPECT_FALSE(moved.registered());
  EXPECT_EXIT(
      {
        try {
          code.call(1);
        } catch (...) {
          _exit(0);
        }
        _exit(0);
      },
      ::testing::KilledBySignal(SIGABRT), "terminate called after throwing");
}

// The failure mode the registration fixes: the unwinder finds no FDE for the JIT pc.
TEST(UnwindDeathTest, WithoutRegistrationTheExceptionTerminates) {
  JitFrame code(&throwingCallee);
  EXPECT_EXIT(
      {
        try {
          code.call(1);
        } catch (...) {
          _exit(0);  // caught: the test fails (exit status 0, not SIGABRT)
        }
        _exit(0);
      },
      ::testing::KilledBySignal(SIGABRT), "terminate called after throwing");
}

TEST(Unwind, WithoutRegistrationBacktraceStopsAtJitFrame) {
  JitFrame code(&tracingCallee);
  code.call(0);
  const int at = jitFrameIndex(code);
  ASSERT_GE(at, 1);
  EXPECT_EQ(static_cast<size_t>(at) + 1, g_trace.size()) << "the walk went past the JIT frame";
  EXPECT_FALSE(testBodyAfter(at, "WithoutRegistrationBacktraceStopsAtJitFrame"));
}

// Test support for runs under an emulator (qemu-user: tests/CMakeLists.txt sets
// PATCHCALL_TEST_EMULATED=1 for every test of a cross build).
//  - Iteration counts of the long-running tests, scaled by PATCHCALL_TEST_SCALE (a factor,
//    default 1; scripts/test-aarch64 sets it, as each emulated instruction costs ten or more
//    native ones). Every concept still runs: a count never drops below `floor`.
//  - The death-test style: "threadsafe" re-executes the test binary, which qemu-user cannot
//    do without binfmt_misc (execv fails with ENOEXEC); emulated, the child forks without exec.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace patchcall::test {

inline double testScale() {
  const char* s = std::getenv("PATCHCALL_TEST_SCALE");
  if (s == nullptr || *s == 0) return 1.0;
  double v = std::strtod(s, nullptr);
  return v > 0 ? v : 1.0;
}
template <typename T>
T scaled(T n, T floor = 1) {
  auto v = static_cast<T>(static_cast<double>(n) * testScale());
  return std::max(std::min(n, floor), v);
}

inline bool emulated() {
  const char* e = std::getenv("PATCHCALL_TEST_EMULATED");
  return e != nullptr && std::strcmp(e, "1") == 0;
}
// In a test that needs what the emulator does not provide (the reason says what).
#define PATCHCALL_SKIP_IF_EMULATED(why)                                            \
  do {                                                                             \
    if (::patchcall::test::emulated()) GTEST_SKIP() << "under emulation: " << why; \
  } while (0)
inline void useThreadsafeDeathTests() { GTEST_FLAG_SET(death_test_style, emulated() ? "fast" : "threadsafe"); }

}  // namespace patchcall::test

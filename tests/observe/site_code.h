// observe tests — the smallest blob with the frame-pointer layout and one Direct site, and the
// C++ targets the unwinding tests call through it.
//
//   push rbp; mov rbp, rsp; nop3; call rel32 (site at 7: rel32 at 8, aligned); leave; ret
#pragma once

#include <cstdint>
#include <vector>

namespace observe_test {

inline constexpr uint32_t kSiteOffset = 7;
inline const std::vector<uint8_t> kSiteCode = {0x55, 0x48, 0x89, 0xE5, 0x0F, 0x1F, 0x00,
                                               0xE8, 0,    0,    0,    0,    0xC9, 0xC3};

// Throws std::runtime_error("through a site").
void throwingTarget(int);
// Stores its backtrace() in tracedFrames().
void tracingTarget(int);
std::vector<void*>& tracedFrames();

}  // namespace observe_test

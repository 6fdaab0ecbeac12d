// observe tests — the smallest blob with the frame-pointer layout and one Direct site (its
// bytes, kSiteCode and kSiteOffset, are the host ISA's: <isa>/frame_code.h), and the C++
// targets the unwinding tests call through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frame_code.h"

namespace observe_test {

// kSiteCode with the no-op instruction written at `offset` (0: the prologue; kEpilogueOffset).
inline std::vector<uint8_t> siteCodeWithNopAt(size_t offset) {
  std::vector<uint8_t> code(kSiteCode);
  for (size_t i = 0; i < kNop.size(); ++i) code[offset + i] = kNop[i];
  return code;
}

// Throws std::runtime_error("through a site").
void throwingTarget(int);
// Stores its backtrace() in tracedFrames().
void tracingTarget(int);
std::vector<void*>& tracedFrames();

}  // namespace observe_test

// patchcall-stress — a tiny per-thread random generator (xorshift64) for scheduling choices.
#pragma once

#include <cstdint>

namespace stress {

inline uint64_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

}  // namespace stress

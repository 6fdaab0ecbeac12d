// patchcall — deadlines: a bound in milliseconds turned into a point in time, saturating.
// `now() + milliseconds::max()` overflows (and the nanosecond conversion before it), which
// would turn "wait as long as needed" into "time out at once".
#pragma once

#include <chrono>

namespace patchcall::detail {

inline std::chrono::steady_clock::time_point deadlineAfter(std::chrono::milliseconds after) noexcept {
  using Clock = std::chrono::steady_clock;
  Clock::time_point now = Clock::now();
  if (after <= std::chrono::milliseconds::zero()) return now;
  auto room = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now);
  return after >= room ? Clock::time_point::max() : now + after;
}

}  // namespace patchcall::detail

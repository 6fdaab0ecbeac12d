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

// deadlineAfter, read from the clock only when first asked for: a grace period that
// completes at its first check (every reader offline or quiescent) reads no clock at all.
// The deadline counts from that first ask, a few instructions after the call began.
class LazyDeadline {
 public:
  explicit LazyDeadline(std::chrono::milliseconds after) noexcept : after_(after) {}
  std::chrono::steady_clock::time_point get() noexcept {
    if (!known_) end_ = deadlineAfter(after_), known_ = true;
    return end_;
  }

 private:
  std::chrono::milliseconds after_;
  std::chrono::steady_clock::time_point end_{};
  bool known_ = false;
};

}  // namespace patchcall::detail

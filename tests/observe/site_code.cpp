// observe tests — the targets of site_code.h (out of line: each is a real frame).
#include "site_code.h"

#include <execinfo.h>

#include <stdexcept>

namespace observe_test {

std::vector<void*>& tracedFrames() {
  static std::vector<void*> frames;
  return frames;
}

__attribute__((noinline)) void throwingTarget(int) { throw std::runtime_error("through a site"); }

__attribute__((noinline)) void tracingTarget(int) {
  std::vector<void*>& f = tracedFrames();
  f.assign(64, nullptr);
  f.resize(static_cast<size_t>(backtrace(f.data(), 64)));
}

}  // namespace observe_test

// patchcall — registers a blob's .eh_frame with the process's unwinder, so C++ exceptions,
// backtrace() and _Unwind_Backtrace-based walkers cross JIT frames.
//
// The unwinder is libgcc's (libgcc_s.so, which glibc's backtrace() and libstdc++'s throw
// use). Its __register_frame takes the start of a whole .eh_frame section and walks the
// CIEs/FDEs up to the zero terminator; __deregister_frame takes the same pointer. LLVM's
// libunwind (and macOS) instead take one FDE per call: LLVM's RTDyldMemoryManager walks the
// section there and passes the section here; this class follows the libgcc convention.
// A binary linked with -static-libgcc has its own unwinder copy, which the one glibc's
// backtrace() loads does not see.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "patchcall/status.h"

namespace patchcall::observe {

class FrameRegistration {
 public:
  FrameRegistration() = default;  // registers nothing
  FrameRegistration(FrameRegistration&& other) noexcept;
  FrameRegistration& operator=(FrameRegistration&& other) noexcept;
  FrameRegistration(const FrameRegistration&) = delete;
  FrameRegistration& operator=(const FrameRegistration&) = delete;
  ~FrameRegistration() { reset(); }

  // Takes `ehFrame` (a complete section with absolute pointers, e.g.
  // arch::buildFramePointerEhFrame) and registers it; it stays registered, and its bytes
  // alive, until reset() or destruction. Deregister before the code's memory is reused.
  static Result<FrameRegistration> create(std::vector<uint8_t> ehFrame);
  void reset();

  bool registered() const noexcept { return !ehFrame_.empty(); }
  std::span<const uint8_t> ehFrame() const noexcept { return ehFrame_; }

 private:
  std::vector<uint8_t> ehFrame_;  // never resized while registered: libgcc keeps the pointer
};

}  // namespace patchcall::observe

// patchcall — FrameRegistration (see frame_registration.h).
#include "frame_registration.h"

#include <utility>

// libgcc (unwind-dw2-fde.c): not in any public header.
extern "C" void __register_frame(void* begin);
extern "C" void __deregister_frame(void* begin);

namespace patchcall::observe {

Result<FrameRegistration> FrameRegistration::create(std::vector<uint8_t> ehFrame) {
  // The smallest section: one CIE header (4 + 4 bytes) and the terminator.
  if (ehFrame.size() < 12) {
    return {Error::kInvalidArgument, "frame registration: .eh_frame of " +
                                         std::to_string(ehFrame.size()) + " bytes holds no CIE"};
  }
  FrameRegistration r;
  r.ehFrame_ = std::move(ehFrame);
  __register_frame(r.ehFrame_.data());
  return r;
}

FrameRegistration::FrameRegistration(FrameRegistration&& other) noexcept
    : ehFrame_(std::exchange(other.ehFrame_, {})) {}

FrameRegistration& FrameRegistration::operator=(FrameRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    ehFrame_ = std::exchange(other.ehFrame_, {});
  }
  return *this;
}

void FrameRegistration::reset() {
  if (ehFrame_.empty()) return;
  __deregister_frame(ehFrame_.data());
  ehFrame_.clear();
  ehFrame_.shrink_to_fit();
}

}  // namespace patchcall::observe

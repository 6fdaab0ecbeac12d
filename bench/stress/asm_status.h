// patchcall-stress — an asmjit error as a patchcall::Status (the driver's emitters return
// errors as values, as the library's do).
#pragma once

#include <asmjit/core.h>

#include <string>

#include "patchcall/status.h"

namespace stress {

inline patchcall::Status asmStatus(asmjit::Error err) {
  if (err == asmjit::kErrorOk) return patchcall::Status::ok();
  return patchcall::Status(patchcall::Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
}

}  // namespace stress

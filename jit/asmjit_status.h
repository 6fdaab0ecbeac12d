// patchcall jit — an asmjit error as a Status (every emitter file returns errors as values).
#pragma once

#include <asmjit/core.h>

#include <string>

#include "patchcall/status.h"

namespace patchcall::jit {

inline Status asmjitStatus(asmjit::Error err) {
  if (err == asmjit::kErrorOk) return Status::ok();
  return Status(Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
}

}  // namespace patchcall::jit

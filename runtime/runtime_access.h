// patchcall — the engine's own way into a Runtime's Impl (the C API, test hooks); the public
// API has none.
#pragma once

#include "patchcall/runtime.h"

namespace patchcall::detail {

struct RuntimeAccess {
  static Runtime::Impl& impl(const Runtime& rt) noexcept { return *rt.impl_; }
};

}  // namespace patchcall::detail

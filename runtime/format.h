// patchcall — small formatting helpers for error messages and diagnostics.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace patchcall::detail {

// An address as 0x... (messages name sites, stacks and targets this way).
inline std::string hex(uintptr_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
  return buf;
}

}  // namespace patchcall::detail

// patchcall — what the engine tells profilers and debuggers about a piece of code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace patchcall::observe {

// Code that became executable (a blob, trampoline, veneer, the safepoint stub). `bytes` are
// the code as installed (read from the RX mapping or the RW alias); only jitdump copies them.
struct CodeEvent {
  uintptr_t start = 0;
  size_t size = 0;
  std::string_view name;
  const uint8_t* bytes = nullptr;
};

// A named part of a blob (a function in code that holds several); addresses are absolute.
struct CodeRange {
  uintptr_t start = 0;
  size_t size = 0;
  std::string_view name;
};

// What perf, jitdump and gdb call code that was installed without a name: "jit_<hex start>".
inline std::string displayName(std::string_view name, uintptr_t start) {
  if (!name.empty()) return std::string(name);
  char buf[32];
  std::snprintf(buf, sizeof buf, "jit_%lx", static_cast<unsigned long>(start));
  return buf;
}

}  // namespace patchcall::observe

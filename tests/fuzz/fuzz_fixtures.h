// api_fuzz fixtures that live for the whole process: C++ call targets, a page of code far
// (> 4 GiB) from everything, and a page of "foreign" (non-arena) code with one E8 call.
#pragma once

#include <cstdint>
#include <optional>

namespace patchcall::fuzz {

// Three C++ functions a key may target; each returns its own value.
struct CxxTarget {
  const void* fn;
  uint32_t value;
};
const CxxTarget* cxxTargets();  // array of kCxxTargets
constexpr int kCxxTargets = 3;

// `mov eax, kFarValue ; ret` on a page at least 8 GiB from the executable's text (nullptr if
// no such page could be mapped): a target only a veneer reaches.
const void* farFunction();
constexpr uint32_t kFarValue = 0xFA7;

// `push rbx ; call rel32 ; pop rbx ; ret` on a private page within rel32 reach of the text,
// the call at +1. reset() points the call at `target` again (between inputs: a previous
// runtime left it pointing into an arena that is gone). nullptr if no page could be mapped.
struct ForeignCode {
  uint8_t* page = nullptr;
  uint8_t* call() const { return page + 1; }
  int (*fn() const)() { return reinterpret_cast<int (*)()>(page); }
  void reset(const void* target);
};
ForeignCode* foreignCode();

}  // namespace patchcall::fuzz

// api_fuzz fixtures that live for the whole process: C++ call targets, a page of code far
// (> 4 GiB) from everything, and a page of "foreign" (non-arena) code with one direct call
// (fuzz_code.h has each ISA's bytes).
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

// `result = kFarValue ; ret` on a page at least 8 GiB from the executable's text (nullptr if
// no such page could be mapped): a target only a veneer reaches.
const void* farFunction();
constexpr uint32_t kFarValue = 0xFA7;

// code::foreignCaller (`push rbx ; call rel32 ; pop rbx ; ret`, A64 `stp ; bl ; ldp ; ret`) on a
// private page within a direct call's reach of the text, the call at code::kForeignCallOffset. reset() points the call at `target` again (between inputs: a previous
// runtime left it pointing into an arena that is gone). nullptr if no page could be mapped.
struct ForeignCode {
  uint8_t* page = nullptr;
  uint8_t* call() const;
  int (*fn() const)() { return reinterpret_cast<int (*)()>(page); }
  void reset(const void* target);
};
ForeignCode* foreignCode();

}  // namespace patchcall::fuzz

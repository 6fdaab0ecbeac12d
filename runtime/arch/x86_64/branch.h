// patchcall x86-64 — `call rel32` / `jmp rel32`: sizes, the rel32 field and its arithmetic.
// A rel32 counts from the end of the instruction, which is also the end of the field.
#pragma once

#include <climits>
#include <cstring>

#include "../arch_types.h"
#include "opcodes.h"

namespace patchcall::arch {

inline constexpr size_t kCallSize = 5;    // E8 rel32
inline constexpr size_t kFieldSize = 4;   // the rel32
inline constexpr size_t kFieldAlign = 4;  // aligned: never crosses a cache line, one store
inline constexpr uint8_t kFillByte = x86::kInt3;
inline constexpr size_t kInstructionAlign = 1;  // a call target may be any byte
inline constexpr size_t kBreakpointSize = 1;
inline constexpr uint8_t kBreakpoint[kBreakpointSize] = {x86::kInt3};
inline constexpr uint8_t kCallHead[kBreakpointSize] = {x86::kCallRel32};
// Words for messages: the patchable call, its field, the breakpoint, the call's head.
inline constexpr const char kCallName[] = "5-byte `call rel32` (E8)";
inline constexpr const char kFieldName[] = "rel32";
inline constexpr const char kBreakpointName[] = "int3";
inline constexpr const char kCallHeadName[] = "final E8";
// Every form exists: the toggle and the breakpoint protocol cover sites one store cannot.
inline constexpr bool kBreakpointProtocol = true;
// A foreign call's rel32 may straddle any alignment, and /proc/self/mem copies bytes: only the
// breakpoint protocol (one-byte int3 first, its tail, its head) keeps every fetch whole.
inline constexpr SiteForm kForeignSiteForm = SiteForm::kBreakpoint;
inline constexpr const char kUnsupportedFormWhy[] = "";

constexpr uintptr_t branchField(uintptr_t insn) noexcept { return insn + 1; }

constexpr bool displacement32(uintptr_t from, uintptr_t to, int32_t* out) noexcept {
  int64_t d = static_cast<int64_t>(to) - static_cast<int64_t>(from);
  if (d < INT32_MIN || d > INT32_MAX) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

constexpr bool inReach(uintptr_t insn, uintptr_t destination) noexcept {
  int32_t unused = 0;
  return displacement32(insn + kCallSize, destination, &unused);
}

// The field ends the instruction: rel32 = destination - (field + 4). Truncates like the
// hardware; callers check inReach first.
constexpr int32_t callFieldValue(uintptr_t field, uintptr_t destination) noexcept {
  return static_cast<int32_t>(static_cast<int64_t>(destination) - static_cast<int64_t>(field + kFieldSize));
}
constexpr int32_t jumpFieldValue(uintptr_t field, uintptr_t destination) noexcept {
  return callFieldValue(field, destination);  // E9 rel32: same field, same math
}

inline void encodeCall(int32_t field, uint8_t out[]) noexcept {
  out[0] = x86::kCallRel32;
  std::memcpy(out + 1, &field, kFieldSize);
}

constexpr bool isCall(const uint8_t* bytes) noexcept { return bytes[0] == x86::kCallRel32; }

inline uintptr_t callDestination(uintptr_t insn, const uint8_t* bytes) noexcept {
  int32_t rel;
  std::memcpy(&rel, bytes + 1, kFieldSize);
  return insn + kCallSize + static_cast<uintptr_t>(static_cast<int64_t>(rel));
}

}  // namespace patchcall::arch

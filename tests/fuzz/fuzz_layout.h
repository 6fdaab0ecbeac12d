// api_fuzz: what the model knows of the host's sites, trampolines, veneers and call reach, and
// how the checks read them back (tests/fuzz/<isa>/fuzz_layout.cpp, CMake picks the host's).
// x86-64: every form, `call rel32`; aarch64: Direct sites only (kToggle/kBreakpoint are refused,
// kAuto is Direct), `bl imm26` reaching +-128 MiB (runtime/arch/<isa>/).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "patchcall/runtime.h"

namespace patchcall::fuzz::layout {

// ---- forms ----
// True for a form this ISA refuses (emitCall and installCode: kInvalidArgument): none on x86,
// kToggle and kBreakpoint on aarch64.
bool formRefused(SiteForm form);
// The form emitCall(kAuto) records for a call emitted at `offset`.
SiteForm autoForm(size_t offset);
// The form site() reports for a foreign site (x86: Breakpoint protocol; A64: Direct).
SiteForm foreignForm();
// The bytes of an installed site of `form` (a target inside them is refused).
size_t siteSize(SiteForm form);
// Where an instruction (and so a call target) may start: any byte (x86), every 4th (A64).
size_t instructionAlign();
// The patched field of the Direct site at `at` is 4-byte aligned.
bool directFieldAligned(const uint8_t* at);
// The toggle at `at`: the call it currently selects, or nullptr with what is wrong.
const uint8_t* toggleSelectedCall(const uint8_t* at, std::string* problem);

// ---- trampolines ----
// The trampoline slot around `entry` is [entry - kSlotBeforeEntry, entry + kSlotAfterEntry).
extern const size_t kSlotBeforeEntry, kSlotAfterEntry;
// The entry's jump has its field 4-byte aligned.
bool trampolineEntryAligned(const uint8_t* entry);

// ---- branches ----
struct Branch {
  bool ok = false;  // a direct call (call) or jump (!call) of the site form's encoding
  const uint8_t* destination = nullptr;
  std::string text;  // the decoded instruction, for messages
};
Branch readBranch(const uint8_t* insn, bool call);
// The runtime's veneer at `p` (x86 `jmp [rip+0] ; .quad`, A64 `ldr x16, #8 ; br x16 ; .quad`):
// its target, nullopt if `p` holds none.
std::optional<uint64_t> veneerTarget(const uint8_t* p);
// A direct call or jump at `insn` reaches `target` (x86 rel32 from its end, A64 imm26 words
// from itself).
bool inDirectReach(const uint8_t* insn, const void* target);
// Where the displacement of the call at `insn` counts from (x86: its end; A64: itself).
uintptr_t displacementOrigin(const uint8_t* insn);
// How far a direct call reaches (x86 2 GiB, A64 128 MiB).
uint64_t directReach();

enum class Reach { kNear, kFar, kMaybe };
// Whether every call whose displacement origin lies in [lo, hi] reaches t directly (kNear),
// none does (kFar); a 64 KiB margin either side of the reach is kMaybe.
inline Reach reachFrom(uintptr_t lo, uintptr_t hi, uintptr_t t) {
  uint64_t worst = t >= hi ? t - lo : t <= lo ? hi - t : std::max(t - lo, hi - t);
  uint64_t best = t >= hi ? t - hi : t <= lo ? lo - t : 0;
  if (worst < directReach() - 0x10000) return Reach::kNear;
  if (best > directReach() + 0x10000) return Reach::kFar;
  return Reach::kMaybe;
}

}  // namespace patchcall::fuzz::layout

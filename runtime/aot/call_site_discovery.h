// patchcall — finding the call the compiler emitted for one PATCHCALL_STATIC_CALL use: decode
// (x86-64: Zydis; aarch64: word by word) forward from the use's marker, inside the marker's
// function, to the first call or jump (`call`/`jmp rel32`, `bl`/`b`) whose destination is the
// trampoline, directly or through a PLT slot whose GOT
// entry already holds the trampoline. Decoding starts at an instruction boundary (the marker
// is one) in compiler-generated code, and only an instruction that decodes to a call or jump
// to the trampoline qualifies: nothing is matched by byte pattern. Per ISA:
// runtime/arch/<isa>/call_site_discovery.cpp.
#pragma once

#include <cstdint>
#include <functional>

namespace patchcall::detail::aot {

struct FoundCall {
  uintptr_t address = 0;      // the call or jump (x86-64: 5 bytes; aarch64: bl/b)
  bool tail = false;          // a jmp (a tail call)
  uintptr_t original = 0;     // where it went as compiled (the trampoline or its PLT entry)
};

// At most this many instructions are decoded after a marker.
inline constexpr int kMaxDecodedAfterMarker = 64;

// `taken(address)`: already claimed by another marker (the search goes on past it).
bool findCallAfterMarker(uintptr_t marker, uintptr_t functionEnd, uintptr_t trampoline,
                         const std::function<bool(uintptr_t)>& taken, FoundCall* out);

}  // namespace patchcall::detail::aot

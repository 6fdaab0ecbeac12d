// patchcall aarch64 — AOT static keys and calls are not patched on this ISA yet: the headers
// compile branches to a load of the key's state and calls to an indirect call through the
// call object's target field (PATCHCALL_STATIC_PATCHING 0), so runtime/aot/ only keeps state.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchcall::arch {

inline constexpr bool kStaticPatching = false;
inline constexpr size_t kStaticSiteSize = 4;
enum class StaticInsn : uint8_t { kNop, kJump, kCall, kOther };
inline void encodeStaticNop(uint8_t[]) noexcept {}
inline bool encodeStaticBranch(uintptr_t, uintptr_t, bool, uint8_t[]) noexcept { return false; }
inline StaticInsn decodeStaticSite(uintptr_t, const uint8_t[], uintptr_t*) noexcept { return StaticInsn::kOther; }
constexpr uintptr_t staticTrampolineIndirect(uintptr_t tramp) noexcept { return tramp; }
// A NULL target (a no-op void call): the portable path has no trampoline whose `ret` could stand
// for it, and an indirect call through NULL would fault, so the target field holds this.
inline void staticCallNoop() noexcept {}
inline uintptr_t staticTrampolineReturn(uintptr_t) noexcept { return reinterpret_cast<uintptr_t>(&staticCallNoop); }
inline bool isStaticTrampoline(const uint8_t*) noexcept { return false; }

}  // namespace patchcall::arch

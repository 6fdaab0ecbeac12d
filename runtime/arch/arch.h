// patchcall — the instruction-set seam: everything the engine and jit/ know about machine code.
//
// The engine (registry, installer, retargeter, trap table) and the emitters speak in sites,
// calls, fields and stubs; every byte behind those words is defined by one ISA folder,
// selected here at compile time. Each ISA defines, in namespace patchcall::arch, the
// constants below and the functions declared below (inline, so hot paths stay inline).
//
// Constants each ISA defines:
//   kCallSize            bytes of one patchable call instruction
//   kFieldSize           bytes of the field one aligned store rewrites to retarget a branch
//   kFieldAlign          the alignment that makes that store single-copy atomic
//   kFillByte            what unused and freed code is filled with (traps when executed)
//   kBreakpoint[kBreakpointSize], kCallHead[kBreakpointSize]
//                        the breakpoint protocol: what covers a site's first bytes while its
//                        tail is rewritten, and the call's own first bytes put back after
//   kToggleAlign, kToggleFlipSize, kStallGapSize
//                        the dual-call toggle: its alignment, the selector's width, the
//                        test-only stall call between selector and call A
//   kCallName, kFieldName, kBreakpointName, kCallHeadName
//                        words for error messages (the engine never spells an opcode)
//   kTrampolineSlotSize  one key's trampoline slot (target cell + jump)
//   kVeneerSize          one far-target veneer
//   kBreakpointProtocol  whether the breakpoint protocol exists (kBreakpoint sites, foreign
//                        sites); kUnsupportedFormWhy: the error text where a form does not
//   kForeignSiteForm     the protocol a foreign site (code patchcall did not emit, written
//                        through /proc/self/mem) is patched with: kBreakpoint or kDirect
//   kPollSize, kPollFlagField, kRedZoneSize
//                        the inline safepoint poll, where its flag displacement sits, and the
//                        stack below the stack pointer that leaf code may use (the slow path
//                        steps over it)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "arch_types.h"  // SiteCalls, ToggleLayout, SiteCheck, SiteHolds
#include "patchcall/options.h"

namespace patchcall::arch {

// ---- branches: the displacement math (one place) ------------------------------------------
// The address of the field a retarget rewrites in the call or jump at `insn`.
constexpr uintptr_t branchField(uintptr_t insn) noexcept;
// Whether a call or jump at `insn` can reach `destination` directly (else: a veneer).
constexpr bool inReach(uintptr_t insn, uintptr_t destination) noexcept;
// The field value that makes the call at `insn` (field at branchField(insn)) reach `destination`
// (which must be inReach). jumpFieldValue: the same for the trampoline's jump.
constexpr int32_t callFieldValue(uintptr_t field, uintptr_t destination) noexcept;
constexpr int32_t jumpFieldValue(uintptr_t field, uintptr_t destination) noexcept;
// A pc-relative 32-bit displacement for a field whose reference point is `from` (jit fixups);
// false when `to` is out of its reach.
constexpr bool displacement32(uintptr_t from, uintptr_t to, int32_t* out) noexcept;
// The complete call instruction whose field holds `field`.
inline void encodeCall(int32_t field, uint8_t out[]) noexcept;
// Whether `bytes` begin a patchable call; where the call at `insn`, holding `bytes`, lands.
constexpr bool isCall(const uint8_t* bytes) noexcept;
inline uintptr_t callDestination(uintptr_t insn, const uint8_t* bytes) noexcept;

// ---- sites: the layout of every form ----------------------------------------------------
constexpr ToggleLayout toggleLayout(uintptr_t site, bool stallGap) noexcept;
constexpr SiteCalls siteCalls(uintptr_t site, SiteForm form, bool stallGap) noexcept;
// Bytes the site occupies (patchcall rewrites them; no target may point inside).
constexpr size_t siteSize(SiteForm form, bool stallGap) noexcept;
// Whether the call at `insn` may be retargeted with one store (its field is aligned).
constexpr bool fieldAligned(uintptr_t insn) noexcept;
// The selector bytes that select B (or A).
inline void toggleFlip(const ToggleLayout& t, bool selectB, uint8_t out[]) noexcept;
// Installing code: what the emitter wrote at `at` for a site of `form`, `room` bytes before
// the end of the code. siteLength reads no further than `room`.
size_t siteLength(SiteForm form, const uint8_t* at, size_t room) noexcept;
SiteCheck checkSiteBytes(SiteForm form, const uint8_t* at, bool* stallGap) noexcept;

// ---- stubs in the arena -----------------------------------------------------------------
// Trampoline slot at `slot`: its entry (the jump a StaticCall's function pointer names) and
// the target cell (the key's current target, readable data).
constexpr uintptr_t trampolineEntry(uintptr_t slot) noexcept;
constexpr uintptr_t trampolineCell(uintptr_t entry) noexcept;
// The jump's first bytes, written once when the key is created (its field comes after).
inline std::span<const uint8_t> trampolineJumpHead() noexcept;
// The shared targets every key may take (kernel static_call parity): a function that
// returns at once (a void call becomes a no-op) and one that returns 0 in the return register.
inline std::span<const uint8_t> noopStub() noexcept;
inline std::span<const uint8_t> returnZeroStub() noexcept;
// A veneer for `target` (kVeneerSize bytes), and the target a written veneer holds.
inline void encodeVeneer(uintptr_t target, uint8_t out[]) noexcept;
inline uintptr_t veneerTarget(uintptr_t veneer) noexcept;

// ---- after a write, and while spinning ----------------------------------------------------
// Makes the `n` bytes just written at `rx` (through the RW alias) visible to this core's
// instruction fetch; the other cores still need the cross-core sync.
inline void codeWritten(uintptr_t rx, size_t n) noexcept;
// The spin-wait hint of the ISA.
inline void cpuRelax() noexcept;
// close(2) without libc, from the caller's own text (the fork child's handler): 0 or -errno.
inline int rawClose(int fd) noexcept;

// ---- emitters (jit/) --------------------------------------------------------------------
// `n` bytes of no-op (n < kMaxNopPadding), for padding before a site.
inline const uint8_t* nopPadding(size_t n) noexcept;
// Where the emitter must stand (offset modulo kFieldAlign) so a Direct site's field is aligned.
constexpr size_t directSiteRemainder() noexcept;
// A toggle site as the emitter writes it: selector (selecting A), [stall call], then the calls
// (fields zero until installed).
inline std::span<const uint8_t> toggleSelectorInitial() noexcept;
inline std::span<const uint8_t> toggleCalls() noexcept;
// The inline poll `compare flag byte with 0` (its displacement at kPollFlagField, zero).
inline std::span<const uint8_t> pollCompare() noexcept;

// ---- the breakpoint trap (signal context) -----------------------------------------------
// For a SIGTRAP: whether it comes from a breakpoint instruction, and at which address.
// ctx is the handler's ucontext_t.
inline bool isBreakpointTrap(int siCode) noexcept;
inline uintptr_t trapSite(const void* ctx) noexcept;
// Resume the trapped thread as if the site's call to `target` had executed ...
inline void emulateCall(void* ctx, uintptr_t site, uintptr_t target) noexcept;
// ... or at the site itself (it holds the complete new call again).
inline void resumeAt(void* ctx, uintptr_t site) noexcept;
// What the site holds now (one acquire load: the handler races with the writer).
inline SiteHolds siteHolds(uintptr_t site) noexcept;

// ---- AOT text: static keys and calls (runtime/aot/, static_text.h) -------------------------
//   kStaticPatching            whether this ISA patches them (else the headers' portable path)
//   kStaticSiteSize, kStaticNop, StaticInsn, encodeStaticNop(), encodeStaticBranch(),
//   decodeStaticSite()         the NOP / jump / call a branch, call site or trampoline holds
//   staticTrampolineIndirect(), staticTrampolineReturn(), isStaticTrampoline()
//                              the trampoline layout of include/patchcall/static_call_aot.h

// ---- debug and unwind information (runtime/observe/, frame_cfi.h) --------------------------
//   kElfMachine                e_machine of the in-memory ELF images (gdb, jitdump)
//   FrameCfiRange, checkFramePointerCode(), buildFramePointerEhFrame()
//                              the .eh_frame bytes of a declared frame layout

}  // namespace patchcall::arch

#if defined(__x86_64__)
#include "x86_64/branch.h"
#include "x86_64/cpu.h"
#include "x86_64/frame_cfi.h"
#include "x86_64/poll.h"
#include "x86_64/raw_syscall.h"
#include "x86_64/safepoint_stub.h"
#include "x86_64/site_layout.h"
#include "x86_64/static_text.h"
#include "x86_64/stubs.h"
#include "x86_64/trap_emulation.h"
#elif defined(__aarch64__)
#include "aarch64/branch.h"
#include "aarch64/cpu.h"
#include "aarch64/frame_cfi.h"
#include "aarch64/poll.h"
#include "aarch64/raw_syscall.h"
#include "aarch64/safepoint_stub.h"
#include "aarch64/site_layout.h"
#include "aarch64/static_text.h"
#include "aarch64/stubs.h"
#include "aarch64/trap_emulation.h"
#else
#error "patchcall: no arch layer for this instruction set (runtime/arch/<isa>/)"
#endif

namespace patchcall::arch {
// Every ISA defines the constants the engine uses (a missing one fails here, not deep inside).
static_assert(kCallSize > 0 && kFieldSize == 4 && kFieldAlign % kFieldSize == 0);
static_assert(kBreakpointSize > 0 && kToggleFlipSize > 0 && kToggleAlign % kToggleFlipSize == 0);
static_assert(kTrampolineSlotSize > 0 && kVeneerSize > 0 && kPollSize > kPollFlagField);
static_assert(sizeof kFillByte == 1 && kRedZoneSize >= 0 && kStallGapSize >= 0 && kMaxNopPadding > 0);
}  // namespace patchcall::arch

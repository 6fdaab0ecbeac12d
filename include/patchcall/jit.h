// patchcall — emitting patchable call sites and safepoint polls with asmjit.
//
//   patchcall::jit::Assembler a(rt);      // the host ISA's asmjit assembler, recording sites
//   a.push(asmjit::x86::rbx);             // (x86-64; on aarch64: a.stp(x29, x30, ...))
//   jit::emitCall(a, key);                // x86: E8 rel32, rel32 4-byte aligned; A64: bl imm26
//   jit::emitSafepointPoll(a);            // x86: cmp byte [rip+flag], 0 ; jne slow
//                                         // A64: adrp x16, flag; ldrb w16, [x16, #lo]; cbnz w16, slow
//   a.pop(asmjit::x86::rbx); a.ret();
//   Result<Blob> blob = jit::install(a);  // relocate, copy through RW, bind sites to keys
//   const void* site = a.siteAddress(0);  // the first site emitted, now in the arena
//
// Blobs are 64-byte aligned in the arena, so an offset's alignment within the code is its
// alignment at the final address. An Assembler installs once.
//
// The instruction set is the host's: jit::Assembler is a NativeAssembler (asmjit::x86::Assembler
// on x86-64, asmjit::a64::Assembler on aarch64), and the emitters below write that ISA's
// instructions (jit/<isa>/emitters.cpp; every encoding from runtime/arch/<isa>/).
#pragma once

#if defined(__x86_64__)
#include <asmjit/x86.h>
#elif defined(__aarch64__)
#include <asmjit/core.h>
#include <asmjit/arm/a64assembler.h>  // this asmjit (Dec 2022) has no <asmjit/a64.h>
#else
#error "patchcall::jit: no emitters for this instruction set (jit/<isa>/)"
#endif

#include <string>
#include <string_view>
#include <vector>

#include "patchcall/runtime.h"

namespace patchcall::jit {

// The asmjit assembler of the host's instruction set: what jit::Assembler derives from.
#if defined(__x86_64__)
using NativeAssembler = asmjit::x86::Assembler;
#elif defined(__aarch64__)
using NativeAssembler = asmjit::a64::Assembler;
#endif

namespace detail {
// What the emitters record while code is emitted, in words every ISA shares; the ISA's
// emitters (jit/<isa>/emitters.h) write it and apply it once the code's address is known.
struct Emission {
  // What a fixup's instruction refers to: a fixed target, or a runtime address given at link.
  enum class Ref : uint8_t { kFixedCall, kSafepointFlag, kSafepointStub };
  static constexpr uint32_t kNoVeneer = UINT32_MAX;
  struct Fixup {
    uint32_t at;  // offset of the instruction
    Ref ref;
    const void* target = nullptr;  // kFixedCall only
    uint32_t veneer = kNoVeneer;   // index into veneers: an ISA whose calls reach less than the
                                   // address space calls a far target through one (aarch64)
  };
  struct Veneer {
    uint32_t at;  // offset (placed after the slow paths); link writes its bytes
    Ref ref;
    const void* target = nullptr;
  };
  struct SlowPath {
    asmjit::Label slow, back;
  };
  std::vector<SiteSpec> sites;
  std::vector<Fixup> fixups;
  std::vector<Veneer> veneers;
  std::vector<SlowPath> slowPaths;
};
// The runtime addresses a fixup may name (Runtime::safepointFlag, safepointStub).
struct LinkTargets {
  const void* safepointFlag = nullptr;
  const void* safepointStub = nullptr;
};

struct HolderBase {
  asmjit::CodeHolder holder;
  HolderBase() { holder.init(asmjit::Environment::host()); }
};
struct AssemblerAccess;  // the emitters' way in (jit/assembler.cpp)
}  // namespace detail

class Assembler : private detail::HolderBase, public NativeAssembler {
 public:
  explicit Assembler(Runtime& rt);
  Assembler(const Assembler&) = delete;
  Assembler& operator=(const Assembler&) = delete;

  Runtime& runtime() const noexcept { return *rt_; }
  // Your own asmjit error handler: called after the Assembler has recorded the error, so
  // install() still refuses code asmjit rejected an instruction of. (These hide asmjit's
  // BaseEmitter functions; a handler set through a BaseEmitter pointer or reference replaces
  // the recorder instead, and install() then refuses with kEmitFailed.)
  void setErrorHandler(asmjit::ErrorHandler* handler) noexcept { errors_.next = handler; }
  void resetErrorHandler() noexcept { errors_.next = nullptr; }
  asmjit::ErrorHandler* errorHandler() const noexcept { return errors_.next; }
  asmjit::CodeHolder& codeHolder() noexcept { return holder; }
  // The sites in emission order (each emitCall adds one): offsets within the code.
  const std::vector<SiteSpec>& sites() const noexcept { return emission_.sites; }
  // Where sites()[index] is once install() succeeded (its first byte: the toggle for
  // kToggle), the address Runtime::site() and the patch observer name; nullptr before
  // install or for an index past the end.
  const void* siteAddress(size_t index) const noexcept {
    return installed_ && index < emission_.sites.size() ? static_cast<const uint8_t*>(code_) + emission_.sites[index].offset
                                                        : nullptr;
  }
  bool installed() const noexcept { return installed_; }

 private:
  friend struct detail::AssemblerAccess;

  // Remembers the first error asmjit reported, so install() refuses code that silently
  // lacks an instruction the caller did not check.
  struct ErrorRecorder : asmjit::ErrorHandler {
    asmjit::Error first = asmjit::kErrorOk;
    std::string message;
    asmjit::ErrorHandler* next = nullptr;  // the user's, via Assembler::setErrorHandler
    void handleError(asmjit::Error err, const char* msg, asmjit::BaseEmitter* origin) override {
      if (first == asmjit::kErrorOk) first = err, message = msg != nullptr ? msg : "";
      if (next != nullptr) next->handleError(err, msg, origin);
    }
  };

  Runtime* rt_;
  ErrorRecorder errors_;
  detail::Emission emission_;
  const void* code_ = nullptr;  // the blob's first byte, once installed
  bool installed_ = false;
  bool finalized_ = false;  // slow paths emitted and links resolved
};

// A patchable call bound to `key`.
//  x86-64: kDirect pads with NOPs so the rel32 is 4-byte aligned; kToggle emits the dual-call
//    toggle; kBreakpoint emits the call where it stands; kAuto is Direct when no padding is
//    needed, else Breakpoint (no NOPs).
//  aarch64: one `bl imm26` (every A64 instruction is aligned, so one store retargets it and no
//    padding is ever needed): kDirect and kAuto; kToggle and kBreakpoint are refused
//    (kInvalidArgument: the ISA has only Direct sites), as Runtime::commitCode refuses them.
Status emitCall(Assembler& a, Key key, SiteForm form = SiteForm::kDirect);
// QSBR poll, inline, with an out-of-line slow path emitted at the end of the code.
//
// x86-64: `cmp byte [rip+flag], 0 ; jne slow`. The slow path is `lea rsp,[rsp-128] ;
// call <runtime's safepoint stub> ; lea rsp,[rsp+128] ; jmp back`. When it runs, it preserves
// everything JIT code may keep live across the poll:
//  - every general register: rax, rcx, rdx, rsi, rdi, r8-r11 are pushed by the stub; rbx, rbp,
//    r12-r15 are kept by the C++ ABI; rsp comes back unchanged;
//  - rflags: restored by popfq (DF included; the C++ side runs with DF clear). The status
//    flags are those of the poll's own cmp on either path: no status flag is live across it;
//  - the whole extended state that XCR0 enables (x87, MXCSR, xmm/ymm/zmm0-31, k0-7, and any
//    other component such as PKRU or AMX tiles), saved with XSAVEC (XSAVE where the CPU has
//    no XSAVEC) into a 64-byte aligned area on the stack and restored with XRSTOR; a CPU or
//    OS without XSAVE gets FXSAVE: x87, MXCSR and xmm0-15, all such a CPU has;
//  - the 128-byte red zone [rsp-128, rsp).
// A thread that has already acknowledged the pending grace period (the flag stays armed until
// every thread has) only gets the general registers and rflags saved: a general-registers-only
// check finds nothing to do, so no vector state is touched. Stack below the red zone: up to
// 152 bytes, plus the save area (sized from CPUID: 2,432 bytes with AVX-512 on this project's
// machines) and the C++ safepoint frames when the slow path has work.
//
// aarch64: `adrp x16, flag ; ldrb w16, [x16, #lo12(flag)] ; cbnz w16, slow` (the flag within
// +-4 GiB, the slow path within 1 MiB). Clobbers x16 (IP0, which any call may clobber under
// AAPCS64) and nothing else; sets no flags. The slow path is `stp x29, x30, [sp, #-16]! ;
// bl <safepoint stub> ; ldp x29, x30, [sp], #16 ; b back`; the stub saves x0-x18, x30, NZCV,
// FPSR, FPCR and q0-q31 (x19-x29 are kept by AAPCS64), so everything else JIT code keeps live
// survives. sp must be 16-byte aligned at the poll (AAPCS64; there is no red zone). SVE state
// beyond the low 128 bits of each vector is not kept.
Status emitSafepointPoll(Assembler& a);
// A plain, unpatchable call to a fixed address (the hard-wired baseline): x86-64 `call rel32`
// (kOutOfRange at install beyond +-2 GiB); aarch64 `bl imm26`, through a veneer at the end of
// the code (`ldr x16, #8 ; br x16 ; .quad target`, one per target) when the target is beyond
// +-128 MiB of the call; the target must be 4-byte aligned (kMisalignedTarget).
Status emitFixedCall(Assembler& a, const void* target);
// Relocates to the arena, copies through the RW alias, applies fixups, binds the sites.
Result<Blob> install(Assembler& a);
// The same with a name (and ranges, frame layout: Runtime::commitCode). The poll slow paths
// install() appends come after your code: with a frame layout, declare
// kFramePointerAnyEpilogue when the code has polls (they run inside the frame). On aarch64
// the fixed calls' veneers come after them (data and `ldr; br`, which no frame rule
// describes): with fixed calls, declare kFramePointerAnyEpilogue too, or ranges that end
// before them.
Result<Blob> install(Assembler& a, const CodeInfo& info);
Result<Blob> install(Assembler& a, std::string_view name);

}  // namespace patchcall::jit

// patchcall — emitting patchable call sites and safepoint polls with asmjit.
//
//   patchcall::jit::Assembler a(rt);      // an asmjit x86::Assembler that records sites
//   a.push(asmjit::x86::rbx);
//   jit::emitCall(a, key);                // E8 rel32, rel32 4-byte aligned at its final address
//   jit::emitSafepointPoll(a);            // cmp byte [rip+flag], 0 ; jne slow
//   a.pop(asmjit::x86::rbx); a.ret();
//   Result<Blob> blob = jit::install(a);  // relocate, copy through RW, bind sites to keys
//   const void* site = a.siteAddress(0);  // the first site emitted, now in the arena
//
// Blobs are 64-byte aligned in the arena, so an offset's alignment within the code is its
// alignment at the final address. An Assembler installs once.
#pragma once

#include <asmjit/x86.h>

#include <string>
#include <string_view>
#include <vector>

#include "patchcall/runtime.h"

namespace patchcall::jit {

namespace detail {
struct HolderBase {
  asmjit::CodeHolder holder;
  HolderBase() { holder.init(asmjit::Environment::host()); }
};
struct AssemblerAccess;  // the emitters' way in (jit/assembler.cpp)
}  // namespace detail

class Assembler : private detail::HolderBase, public asmjit::x86::Assembler {
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
  const std::vector<SiteSpec>& sites() const noexcept { return sites_; }
  // Where sites()[index] is once install() succeeded (its first byte: the toggle for
  // kToggle), the address Runtime::site() and the patch observer name; nullptr before
  // install or for an index past the end.
  const void* siteAddress(size_t index) const noexcept {
    return installed_ && index < sites_.size() ? static_cast<const uint8_t*>(code_) + sites_[index].offset : nullptr;
  }
  bool installed() const noexcept { return installed_; }

 private:
  friend struct detail::AssemblerAccess;

  struct Fixup {
    uint32_t field;  // offset of the 32-bit field
    uint32_t end;    // offset its displacement is relative to
    const void* target;
  };
  struct SlowPath {
    asmjit::Label slow, back;
  };
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
  Status recordError(asmjit::Error err);

  Runtime* rt_;
  ErrorRecorder errors_;
  std::vector<SiteSpec> sites_;
  std::vector<Fixup> fixups_;
  std::vector<SlowPath> slowPaths_;
  const void* code_ = nullptr;  // the blob's first byte, once installed
  bool installed_ = false;
  bool finalized_ = false;  // slow paths emitted and links resolved
};

// A patchable call bound to `key`. kDirect pads with NOPs so the rel32 is 4-byte aligned;
// kToggle emits the dual-call toggle; kBreakpoint emits the call where it stands;
// kAuto is Direct when no padding is needed, else Breakpoint (no NOPs).
Status emitCall(Assembler& a, Key key, SiteForm form = SiteForm::kDirect);
// QSBR poll: `cmp byte [rip+flag], 0 ; jne slow` inline. The slow path, emitted at the end of
// the code, is `lea rsp,[rsp-128] ; call <runtime's safepoint stub> ; lea rsp,[rsp+128] ;
// jmp back`. When it runs, it preserves everything JIT code may keep live across the poll:
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
Status emitSafepointPoll(Assembler& a);
// A plain, unpatchable `call rel32` to a fixed address (the hard-wired baseline).
Status emitFixedCall(Assembler& a, const void* target);
// Relocates to the arena, copies through the RW alias, applies fixups, binds the sites.
Result<Blob> install(Assembler& a);
// The same with a name (and ranges, frame layout: Runtime::commitCode). The poll slow paths
// install() appends come after your code: with a frame layout, declare
// kFramePointerAnyEpilogue when the code has polls (they run inside the frame).
Result<Blob> install(Assembler& a, const CodeInfo& info);
Result<Blob> install(Assembler& a, std::string_view name);

}  // namespace patchcall::jit

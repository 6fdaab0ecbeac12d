// patchcall — jit::Assembler and the emitters' public entry points: argument checks and the
// install steps, the same for every ISA. The instructions are the ISA's (jit/<isa>/, through
// jit/emitters.h).
#include "asmjit_status.h"
#include "emitters.h"
#include "patchcall/jit.h"
#ifdef PATCHCALL_TEST_HOOKS
#include "patchcall/testing.h"
#endif

namespace patchcall::jit {

namespace detail {
struct AssemblerAccess {
  static bool finalized(const Assembler& a) noexcept { return a.finalized_; }
  static Emission& emission(Assembler& a) noexcept { return a.emission_; }
  static Result<Blob> install(Assembler& a, const CodeInfo& info);
};
}  // namespace detail

namespace {
using Access = detail::AssemblerAccess;

Status alreadyInstalled(const char* what) {
  return Status(Error::kInvalidArgument, std::string(what) + ": install() was already called on this Assembler");
}
}  // namespace

Assembler::Assembler(Runtime& rt) : NativeAssembler(&holder), rt_(&rt) {
  holder.setErrorHandler(&errors_);
  NativeAssembler::setErrorHandler(&errors_);  // the emitter's own: install() checks it is still ours
}

Status emitCall(Assembler& a, Key key, SiteForm form) {
  if (Access::finalized(a)) return alreadyInstalled("emitCall");
  if (!key.valid()) return Status(Error::kUnknownKey, "emitCall: invalid key");
  return isa::emitCall(a, Access::emission(a), key, form);
}

Status emitFixedCall(Assembler& a, const void* target) {
  if (Access::finalized(a)) return alreadyInstalled("emitFixedCall");
  if (target == nullptr) return Status(Error::kNullTarget, "emitFixedCall: null target");
  return isa::emitFixedCall(a, Access::emission(a), target);
}

Status emitSafepointPoll(Assembler& a) {
  if (Access::finalized(a)) return alreadyInstalled("emitSafepointPoll");
  return isa::emitPoll(a, Access::emission(a));
}

Result<Blob> install(Assembler& a) { return Access::install(a, CodeInfo{}); }
Result<Blob> install(Assembler& a, const CodeInfo& info) { return Access::install(a, info); }
Result<Blob> install(Assembler& a, std::string_view name) { return Access::install(a, CodeInfo{name, {}, FrameLayout::kNone}); }

Result<Blob> detail::AssemblerAccess::install(Assembler& a, const CodeInfo& info) {
  if (a.installed_) return Status(Error::kInvalidArgument, "install: this Assembler was already installed");
  if (a.NativeAssembler::errorHandler() != &a.errors_) {
    return Status(Error::kEmitFailed,
                  "install: the Assembler's asmjit error handler was replaced (through asmjit::BaseEmitter), so "
                  "install() cannot tell whether asmjit refused an instruction; set yours with "
                  "jit::Assembler::setErrorHandler, which chains it");
  }
  asmjit::CodeHolder& code = a.codeHolder();
  if (!a.finalized_) {  // once: install may be retried after e.g. kArenaExhausted
    PATCHCALL_TRY(isa::emitOutOfLine(a, a.emission_));
    PATCHCALL_TRY(asmjitStatus(code.flatten()));
    PATCHCALL_TRY(asmjitStatus(code.resolveUnresolvedLinks()));
    a.finalized_ = true;
  }
  if (a.errors_.first != asmjit::kErrorOk) {
    return Status(Error::kEmitFailed, std::string("install: asmjit refused an instruction earlier (") +
                                          asmjit::DebugUtils::errorAsString(a.errors_.first) + ": " + a.errors_.message +
                                          "); the code would lack it");
  }
  if (code.hasUnresolvedLinks()) {
    return Status(Error::kEmitFailed, "install: " + std::to_string(code.unresolvedLinkCount()) +
                                          " jump(s) to labels that were never bound");
  }
  size_t size = code.codeSize();
  if (size == 0) return Status(Error::kInvalidArgument, "install: no code was emitted");

  Runtime& rt = a.runtime();
  Result<CodeReservation> r = rt.reserveCode(size);
  if (!r) return r.status();
  auto fail = [&](Status s) -> Result<Blob> {
    rt.abandonCode(*r);
    return s;
  };
  auto base = reinterpret_cast<uintptr_t>(r->rx);
  if (asmjit::Error e = code.relocateToBase(base); e != asmjit::kErrorOk) return fail(asmjitStatus(e));
  if (code.codeSize() > r->size) return fail(Status(Error::kEmitFailed, "install: code grew during relocation"));
  if (asmjit::Error e = code.copyFlattenedData(r->rw, r->size, asmjit::CopySectionFlags::kPadTargetBuffer); e != asmjit::kErrorOk) {
    return fail(asmjitStatus(e));
  }
  detail::LinkTargets targets{const_cast<const uint8_t*>(rt.safepointFlag()), rt.safepointStub()};
  if (Status s = isa::link(a.emission_, base, r->rw, targets); !s.isOk()) return fail(s);
  Result<Blob> blob = rt.commitCode(*r, a.emission_.sites, info);
  if (!blob) return fail(blob.status());
  a.installed_ = true;
  a.code_ = blob->code;
  return blob;
}

}  // namespace patchcall::jit

#ifdef PATCHCALL_TEST_HOOKS
namespace patchcall::testing {
Status emitToggleWithStall(jit::Assembler& a, Key key, void (*stall)()) {
  if (stall == nullptr) return Status(Error::kInvalidArgument, "emitToggleWithStall: null stall function");
  if (jit::detail::AssemblerAccess::finalized(a)) return Status(Error::kInvalidArgument, "emitCall: install() was already called on this Assembler");
  return jit::isa::emitToggle(a, jit::detail::AssemblerAccess::emission(a), key, stall);
}
}  // namespace patchcall::testing
#endif

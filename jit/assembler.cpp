// patchcall — asmjit emission of sites, polls and fixed calls; installation into the arena.
#include <cstring>

#include "arch/arch.h"
#include "patchcall/jit.h"
#ifdef PATCHCALL_TEST_HOOKS
#include "patchcall/testing.h"
#endif

namespace patchcall::jit {

namespace detail {
struct AssemblerAccess {
  static bool finalized(const Assembler& a) noexcept { return a.finalized_; }
  static void addSite(Assembler& a, Key key, SiteForm form) {
    a.sites_.push_back(SiteSpec{static_cast<uint32_t>(a.offset()), key, form});
  }
  static void addFixup(Assembler& a, uint32_t field, uint32_t end, const void* target) { a.fixups_.push_back({field, end, target}); }
  static Status recordError(Assembler& a, asmjit::Error err) { return a.recordError(err); }
  static Result<Blob> install(Assembler& a, const CodeInfo& info);
  static Status addPoll(Assembler& a);
};
}  // namespace detail

namespace {
using Access = detail::AssemblerAccess;

// Every byte embedded here comes from the arch layer (runtime/arch/<isa>/).
struct CallPlaceholder {
  uint8_t bytes[arch::kCallSize];
  CallPlaceholder() { arch::encodeCall(0, bytes); }  // field filled in by install()
};
const CallPlaceholder kCallPlaceholder;
constexpr uint32_t kCallFieldOffset = static_cast<uint32_t>(arch::branchField(0));

}  // namespace

Assembler::Assembler(Runtime& rt) : asmjit::x86::Assembler(&holder), rt_(&rt) {
  holder.setErrorHandler(&errors_);
  asmjit::x86::Assembler::setErrorHandler(&errors_);  // the emitter's own: install() checks it is still ours
}

Status Assembler::recordError(asmjit::Error err) {
  if (err == asmjit::kErrorOk) return Status::ok();
  return Status(Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
}

namespace {

Status embed(Assembler& a, const uint8_t* bytes, size_t n) {
  asmjit::Error err = a.embed(bytes, n);
  if (err != asmjit::kErrorOk) return Status(Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
  return Status::ok();
}

Status embed(Assembler& a, std::span<const uint8_t> bytes) { return embed(a, bytes.data(), bytes.size()); }

Status padTo(Assembler& a, size_t modulus, size_t wantedRemainder) {
  size_t pad = (wantedRemainder + modulus - a.offset() % modulus) % modulus;
  return pad == 0 ? Status::ok() : embed(a, arch::nopPadding(pad), pad);
}

Status emitToggle(Assembler& a, Key key, void (*stall)());

}  // namespace

Status emitCall(Assembler& a, Key key, SiteForm form) {
  if (Access::finalized(a)) return Status(Error::kInvalidArgument, "emitCall: install() was already called on this Assembler");
  if (!key.valid()) return Status(Error::kUnknownKey, "emitCall: invalid key");
  if (form == SiteForm::kToggle) return emitToggle(a, key, nullptr);
  if (form == SiteForm::kAuto) form = arch::fieldAligned(a.offset()) ? SiteForm::kDirect : SiteForm::kBreakpoint;
  if (form == SiteForm::kDirect) PATCHCALL_TRY(padTo(a, arch::kFieldAlign, arch::directSiteRemainder()));
  Access::addSite(a, key, form);
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

namespace {
// The layout (runtime/arch/<isa>/site_layout.h): selector, [stall call], call A, call B. The
// selector is aligned, so it never straddles a cache line and one store flips it.
Status emitToggle(Assembler& a, Key key, void (*stall)()) {
  if (Access::finalized(a)) return Status(Error::kInvalidArgument, "emitCall: install() was already called on this Assembler");
  PATCHCALL_TRY(padTo(a, arch::kToggleAlign, 0));
  Access::addSite(a, key, SiteForm::kToggle);
  PATCHCALL_TRY(embed(a, arch::toggleSelectorInitial()));
  if (stall != nullptr) PATCHCALL_TRY(emitFixedCall(a, reinterpret_cast<const void*>(stall)));
  return embed(a, arch::toggleCalls());
}
}  // namespace

Status emitFixedCall(Assembler& a, const void* target) {
  if (Access::finalized(a)) return Status(Error::kInvalidArgument, "emitFixedCall: install() was already called on this Assembler");
  if (target == nullptr) return Status(Error::kNullTarget, "emitFixedCall: null target");
  auto at = static_cast<uint32_t>(a.offset());
  Access::addFixup(a, at + kCallFieldOffset, at + static_cast<uint32_t>(arch::kCallSize), target);
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

Status emitSafepointPoll(Assembler& a) { return Access::addPoll(a); }

Status detail::AssemblerAccess::addPoll(Assembler& a) {
  if (a.finalized_) return Status(Error::kInvalidArgument, "emitSafepointPoll: install() was already called on this Assembler");
  auto at = static_cast<uint32_t>(a.offset());
  PATCHCALL_TRY(embed(a, arch::pollCompare()));
  a.fixups_.push_back({at + static_cast<uint32_t>(arch::kPollFlagField), at + static_cast<uint32_t>(arch::kPollSize),
                       const_cast<const uint8_t*>(a.runtime().safepointFlag())});
  Assembler::SlowPath p{a.newLabel(), a.newLabel()};
  PATCHCALL_TRY(a.recordError(a.jne(p.slow)));
  PATCHCALL_TRY(a.recordError(a.bind(p.back)));
  a.slowPaths_.push_back(p);
  return Status::ok();
}

Result<Blob> install(Assembler& a) { return Access::install(a, CodeInfo{}); }
Result<Blob> install(Assembler& a, const CodeInfo& info) { return Access::install(a, info); }
Result<Blob> install(Assembler& a, std::string_view name) { return Access::install(a, CodeInfo{name, {}, FrameLayout::kNone}); }

Result<Blob> detail::AssemblerAccess::install(Assembler& a, const CodeInfo& info) {
  if (a.installed_) return Status(Error::kInvalidArgument, "install: this Assembler was already installed");
  if (a.asmjit::x86::Assembler::errorHandler() != &a.errors_) {
    return Status(Error::kEmitFailed,
                  "install: the Assembler's asmjit error handler was replaced (through asmjit::BaseEmitter), so "
                  "install() cannot tell whether asmjit refused an instruction; set yours with "
                  "jit::Assembler::setErrorHandler, which chains it");
  }
  asmjit::CodeHolder& code = a.codeHolder();
  if (!a.finalized_) {  // once: install may be retried after e.g. kArenaExhausted
    // Out-of-line poll slow paths: step over the red zone (the call's return address and the
    // stub's frame would land in it; lea leaves the flags alone), call the shared stub, step
    // back, resume after the poll.
    for (const Assembler::SlowPath& p : a.slowPaths_) {
      PATCHCALL_TRY(a.recordError(a.bind(p.slow)));
      PATCHCALL_TRY(a.recordError(a.lea(asmjit::x86::rsp, asmjit::x86::ptr(asmjit::x86::rsp, -arch::kRedZoneSize))));
      PATCHCALL_TRY(emitFixedCall(a, a.runtime().safepointStub()));
      PATCHCALL_TRY(a.recordError(a.lea(asmjit::x86::rsp, asmjit::x86::ptr(asmjit::x86::rsp, arch::kRedZoneSize))));
      PATCHCALL_TRY(a.recordError(a.jmp(p.back)));
    }
    PATCHCALL_TRY(a.recordError(code.flatten()));
    PATCHCALL_TRY(a.recordError(code.resolveUnresolvedLinks()));
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
  if (asmjit::Error e = code.relocateToBase(base); e != asmjit::kErrorOk) return fail(a.recordError(e));
  if (code.codeSize() > r->size) return fail(Status(Error::kEmitFailed, "install: code grew during relocation"));
  if (asmjit::Error e = code.copyFlattenedData(r->rw, r->size, asmjit::CopySectionFlags::kPadTargetBuffer); e != asmjit::kErrorOk) {
    return fail(a.recordError(e));
  }
  for (const Assembler::Fixup& f : a.fixups_) {
    int32_t v = 0;
    if (!arch::displacement32(base + f.end, reinterpret_cast<uintptr_t>(f.target), &v)) {
      return fail(Status(Error::kOutOfRange, "install: a fixed call or poll target is beyond rel32 reach of the arena"));
    }
    std::memcpy(r->rw + f.field, &v, sizeof v);
  }
  Result<Blob> blob = rt.commitCode(*r, a.sites_, info);
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
  return jit::emitToggle(a, key, stall);
}
}  // namespace patchcall::testing
#endif

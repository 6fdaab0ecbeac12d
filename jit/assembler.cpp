// patchcall — asmjit emission of sites, polls and fixed calls; installation into the arena.
#include <cstring>

#include "patchcall/jit.h"
#ifdef PATCHCALL_TEST_HOOKS
#include "patchcall/testing.h"
#endif

namespace patchcall::jit {
namespace {

// Intel's recommended multi-byte NOPs, 1..3 bytes (all padding before a site needs).
const uint8_t kNops[4][3] = {{}, {0x90}, {0x66, 0x90}, {0x0F, 0x1F, 0x00}};
const uint8_t kCallPlaceholder[5] = {0xE8, 0, 0, 0, 0};
// SysV red zone: the 128 bytes below rsp that leaf code may use without moving rsp.
constexpr int32_t kRedZoneSize = 128;

int64_t rel(uintptr_t from, uintptr_t to) { return static_cast<int64_t>(to) - static_cast<int64_t>(from); }

}  // namespace

Assembler::Assembler(Runtime& rt) : asmjit::x86::Assembler(&holder), rt_(&rt) { holder.setErrorHandler(&errors_); }

Status Assembler::recordError(asmjit::Error err) {
  if (err == asmjit::kErrorOk) return Status::ok();
  return Status(Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
}

static Status embed(Assembler& a, const uint8_t* bytes, size_t n) {
  asmjit::Error err = a.embed(bytes, n);
  if (err != asmjit::kErrorOk) return Status(Error::kEmitFailed, std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(err));
  return Status::ok();
}

static Status padTo(Assembler& a, size_t modulus, size_t wantedRemainder) {
  size_t pad = (wantedRemainder + modulus - a.offset() % modulus) % modulus;
  return pad == 0 ? Status::ok() : embed(a, kNops[pad], pad);
}

Status emitCall(Assembler& a, Key key, SiteForm form) {
  if (a.finalized_) return Status(Error::kInvalidArgument, "emitCall: install() was already called on this Assembler");
  if (!key.valid()) return Status(Error::kUnknownKey, "emitCall: invalid key");
  if (form == SiteForm::kToggle) return emitToggle(a, key, nullptr);
  if (form == SiteForm::kAuto) form = (a.offset() + 1) % 4 == 0 ? SiteForm::kDirect : SiteForm::kBreakpoint;
  if (form == SiteForm::kDirect) PATCHCALL_TRY(padTo(a, 4, 3));  // E8 at 4k+3: rel32 at 4k+4
  a.sites_.push_back(SiteSpec{static_cast<uint32_t>(a.offset()), key, form});
  return embed(a, kCallPlaceholder, 5);
}

// [66 90 | EB xx][E8 stall]?[E8 A][EB 05][E8 B]: the 2-byte toggle is 2-aligned, so it never
// straddles a cache line and one 16-bit store flips it.
Status emitToggle(Assembler& a, Key key, void (*stall)()) {
  if (a.finalized_) return Status(Error::kInvalidArgument, "emitToggle: install() was already called on this Assembler");
  PATCHCALL_TRY(padTo(a, 2, 0));
  a.sites_.push_back(SiteSpec{static_cast<uint32_t>(a.offset()), key, SiteForm::kToggle});
  static const uint8_t kNop2[2] = {0x66, 0x90};
  PATCHCALL_TRY(embed(a, kNop2, 2));
  if (stall != nullptr) PATCHCALL_TRY(emitFixedCall(a, reinterpret_cast<const void*>(stall)));
  static const uint8_t kCalls[12] = {0xE8, 0, 0, 0, 0, 0xEB, 0x05, 0xE8, 0, 0, 0, 0};
  return embed(a, kCalls, sizeof kCalls);
}

Status emitFixedCall(Assembler& a, const void* target) {
  if (a.finalized_) return Status(Error::kInvalidArgument, "emitFixedCall: install() was already called on this Assembler");
  if (target == nullptr) return Status(Error::kNullTarget, "emitFixedCall: null target");
  auto at = static_cast<uint32_t>(a.offset());
  a.fixups_.push_back({at + 1, at + 5, target});
  return embed(a, kCallPlaceholder, 5);
}

Status emitSafepointPoll(Assembler& a) {
  if (a.finalized_) return Status(Error::kInvalidArgument, "emitSafepointPoll: install() was already called on this Assembler");
  auto at = static_cast<uint32_t>(a.offset());
  static const uint8_t kCmp[7] = {0x80, 0x3D, 0, 0, 0, 0, 0x00};  // cmp byte [rip+disp32], 0
  PATCHCALL_TRY(embed(a, kCmp, sizeof kCmp));
  a.fixups_.push_back({at + 2, at + 7, const_cast<const uint8_t*>(a.runtime().safepointFlag())});
  Assembler::SlowPath p{a.newLabel(), a.newLabel()};
  PATCHCALL_TRY(a.recordError(a.jne(p.slow)));
  PATCHCALL_TRY(a.recordError(a.bind(p.back)));
  a.slowPaths_.push_back(p);
  return Status::ok();
}

Result<Blob> install(Assembler& a) {
  if (a.installed_) return Status(Error::kInvalidArgument, "install: this Assembler was already installed");
  asmjit::CodeHolder& code = a.codeHolder();
  if (!a.finalized_) {  // once: install may be retried after e.g. kArenaExhausted
    // Out-of-line poll slow paths: step over the red zone (the call's return address and the
    // stub's frame would land in it; lea leaves the flags alone), call the shared stub, step
    // back, resume after the poll.
    for (const Assembler::SlowPath& p : a.slowPaths_) {
      PATCHCALL_TRY(a.recordError(a.bind(p.slow)));
      PATCHCALL_TRY(a.recordError(a.lea(asmjit::x86::rsp, asmjit::x86::ptr(asmjit::x86::rsp, -kRedZoneSize))));
      PATCHCALL_TRY(emitFixedCall(a, a.runtime().safepointStub()));
      PATCHCALL_TRY(a.recordError(a.lea(asmjit::x86::rsp, asmjit::x86::ptr(asmjit::x86::rsp, kRedZoneSize))));
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
    int64_t d = rel(base + f.end, reinterpret_cast<uintptr_t>(f.target));
    if (d < INT32_MIN || d > INT32_MAX) {
      return fail(Status(Error::kOutOfRange, "install: a fixed call or poll target is beyond rel32 reach of the arena"));
    }
    auto v = static_cast<int32_t>(d);
    std::memcpy(r->rw + f.field, &v, 4);
  }
  Result<Blob> blob = rt.commitCode(*r, a.sites_);
  if (!blob) return fail(blob.status());
  a.installed_ = true;
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

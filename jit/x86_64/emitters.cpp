// patchcall x86-64 — asmjit emission of sites, polls and fixed calls, and their link.
// Every byte embedded or patched here comes from runtime/arch/x86_64/.
#include "emitters.h"

#include <cstring>

#include "../asmjit_status.h"
#include "arch/x86_64/branch.h"
#include "arch/x86_64/poll.h"
#include "arch/x86_64/site_layout.h"

namespace patchcall::jit::isa {

namespace {
using detail::Emission;

struct CallPlaceholder {
  uint8_t bytes[arch::kCallSize];
  CallPlaceholder() { arch::encodeCall(0, bytes); }  // field filled in by install()
};
const CallPlaceholder kCallPlaceholder;

Status embed(IsaAssembler& a, const uint8_t* bytes, size_t n) { return asmjitStatus(a.embed(bytes, n)); }
Status embed(IsaAssembler& a, std::span<const uint8_t> bytes) { return embed(a, bytes.data(), bytes.size()); }

Status padTo(IsaAssembler& a, size_t modulus, size_t wantedRemainder) {
  size_t pad = (wantedRemainder + modulus - a.offset() % modulus) % modulus;
  return pad == 0 ? Status::ok() : embed(a, arch::nopPadding(pad), pad);
}

void addSite(IsaAssembler& a, Emission& e, Key key, SiteForm form) {
  e.sites.push_back(SiteSpec{static_cast<uint32_t>(a.offset()), key, form});
}

}  // namespace

Status emitCall(IsaAssembler& a, Emission& e, Key key, SiteForm form) {
  if (form == SiteForm::kToggle) return emitToggle(a, e, key, nullptr);
  if (form == SiteForm::kAuto) form = arch::fieldAligned(a.offset()) ? SiteForm::kDirect : SiteForm::kBreakpoint;
  if (form == SiteForm::kDirect) PATCHCALL_TRY(padTo(a, arch::kFieldAlign, arch::directSiteRemainder()));
  addSite(a, e, key, form);
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

// The layout (runtime/arch/x86_64/site_layout.h): selector, [stall call], call A, call B. The
// selector is aligned, so it never straddles a cache line and one store flips it.
Status emitToggle(IsaAssembler& a, Emission& e, Key key, void (*stall)()) {
  PATCHCALL_TRY(padTo(a, arch::kToggleAlign, 0));
  addSite(a, e, key, SiteForm::kToggle);
  PATCHCALL_TRY(embed(a, arch::toggleSelectorInitial()));
  if (stall != nullptr) PATCHCALL_TRY(emitFixedCall(a, e, reinterpret_cast<const void*>(stall)));
  return embed(a, arch::toggleCalls());
}

Status emitFixedCall(IsaAssembler& a, Emission& e, const void* target) {
  e.fixups.push_back({static_cast<uint32_t>(a.offset()), Emission::Ref::kFixedCall, target});
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

Status emitPoll(IsaAssembler& a, Emission& e) {
  auto at = static_cast<uint32_t>(a.offset());
  PATCHCALL_TRY(embed(a, arch::pollCompare()));
  e.fixups.push_back({at, Emission::Ref::kSafepointFlag});
  Emission::SlowPath p{a.newLabel(), a.newLabel()};
  PATCHCALL_TRY(asmjitStatus(a.jne(p.slow)));
  PATCHCALL_TRY(asmjitStatus(a.bind(p.back)));
  e.slowPaths.push_back(p);
  return Status::ok();
}

// Out-of-line poll slow paths: step over the red zone (the call's return address and the
// stub's frame would land in it; lea leaves the flags alone), call the shared stub, step
// back, resume after the poll.
Status emitOutOfLine(IsaAssembler& a, Emission& e) {
  using asmjit::x86::ptr;
  using asmjit::x86::rsp;
  for (const Emission::SlowPath& p : e.slowPaths) {
    PATCHCALL_TRY(asmjitStatus(a.bind(p.slow)));
    PATCHCALL_TRY(asmjitStatus(a.lea(rsp, ptr(rsp, -arch::kRedZoneSize))));
    e.fixups.push_back({static_cast<uint32_t>(a.offset()), Emission::Ref::kSafepointStub});
    PATCHCALL_TRY(embed(a, kCallPlaceholder.bytes, arch::kCallSize));
    PATCHCALL_TRY(asmjitStatus(a.lea(rsp, ptr(rsp, arch::kRedZoneSize))));
    PATCHCALL_TRY(asmjitStatus(a.jmp(p.back)));
  }
  return Status::ok();
}

Status link(const Emission& e, uintptr_t base, uint8_t* rw, const detail::LinkTargets& targets) {
  for (const Emission::Fixup& f : e.fixups) {
    const void* target = f.ref == Emission::Ref::kSafepointFlag   ? targets.safepointFlag
                         : f.ref == Emission::Ref::kSafepointStub ? targets.safepointStub
                                                                  : f.target;
    bool poll = f.ref == Emission::Ref::kSafepointFlag;
    uint32_t field = f.at + static_cast<uint32_t>(poll ? arch::kPollFlagField : arch::branchField(0));
    uint32_t end = f.at + static_cast<uint32_t>(poll ? arch::kPollSize : arch::kCallSize);
    int32_t v = 0;
    if (!arch::displacement32(base + end, reinterpret_cast<uintptr_t>(target), &v)) {
      return Status(Error::kOutOfRange, "install: a fixed call or poll target is beyond rel32 reach of the arena");
    }
    std::memcpy(rw + field, &v, sizeof v);
  }
  return Status::ok();
}

}  // namespace patchcall::jit::isa

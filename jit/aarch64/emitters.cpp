// patchcall aarch64 — asmjit emission of sites, polls and fixed calls, and their link.
// Every A64 word embedded or patched here comes from runtime/arch/aarch64/; asmjit writes the
// branches to labels and the slow path's frame save (as the x86 file lets it write jne, lea).
#include "emitters.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "../asmjit_status.h"
#include "arch/aarch64/branch.h"
#include "arch/aarch64/poll.h"
#include "arch/aarch64/site_layout.h"
#include "arch/aarch64/stubs.h"

namespace patchcall::jit::isa {

namespace {
using detail::Emission;
namespace a64 = asmjit::a64;

// `bl .`: a complete BL from the start (commitCode checks that every site holds one); link or
// commitCode writes the real offset.
struct CallPlaceholder {
  uint8_t bytes[arch::kCallSize];
  CallPlaceholder() { arch::encodeCall(arch::callFieldValue(0, 0), bytes); }
};
const CallPlaceholder kCallPlaceholder;
// Unused code and a veneer until link writes it: trapping fill (udf #0).
struct Fill {
  uint8_t bytes[arch::kVeneerSize];
  Fill() { std::memset(bytes, arch::kFillByte, sizeof bytes); }
};
const Fill kFill;
constexpr size_t kVeneerAlign = 8;  // its .quad naturally aligned (blobs are 64-byte aligned)
static_assert(arch::kVeneerSize % kVeneerAlign == 0 && kVeneerAlign % arch::kFieldAlign == 0);

Status embed(IsaAssembler& a, const uint8_t* bytes, size_t n) { return asmjitStatus(a.embed(bytes, n)); }
Status embed(IsaAssembler& a, std::span<const uint8_t> bytes) { return embed(a, bytes.data(), bytes.size()); }

// Embedded data of a length not a multiple of 4 leaves asmjit at an offset no instruction may
// start at.
Status checkAligned(IsaAssembler& a, const char* what) {
  if (arch::fieldAligned(a.offset())) return Status::ok();
  return Status(Error::kInvalidArgument, std::string(what) + ": the code offset " + std::to_string(a.offset()) +
                                             " is not 4-byte aligned (bytes embedded before it?)");
}

Status addCall(IsaAssembler& a, Emission& e, Emission::Ref ref, const void* target) {
  e.fixups.push_back({static_cast<uint32_t>(a.offset()), ref, target});
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

uintptr_t resolve(Emission::Ref ref, const void* target, const detail::LinkTargets& t) {
  const void* p = ref == Emission::Ref::kSafepointFlag ? t.safepointFlag : ref == Emission::Ref::kSafepointStub ? t.safepointStub : target;
  return reinterpret_cast<uintptr_t>(p);
}

auto veneerKey(Emission::Ref ref, const void* target) { return std::make_tuple(ref, target); }

}  // namespace

Status emitCall(IsaAssembler& a, Emission& e, Key key, SiteForm form) {
  if (form == SiteForm::kToggle || form == SiteForm::kBreakpoint) {
    return Status(Error::kInvalidArgument, std::string("emitCall: ") + arch::kUnsupportedFormWhy);
  }
  // Anything else outside the enum used to be emitted as a Direct site.
  if (form != SiteForm::kDirect && form != SiteForm::kAuto) {
    return Status(Error::kInvalidArgument, "emitCall: site form " + std::to_string(static_cast<int>(form)) + " is not a SiteForm");
  }
  PATCHCALL_TRY(checkAligned(a, "emitCall"));
  e.sites.push_back(SiteSpec{static_cast<uint32_t>(a.offset()), key, SiteForm::kDirect});
  return embed(a, kCallPlaceholder.bytes, arch::kCallSize);
}

Status emitToggle(IsaAssembler&, Emission&, Key, void (*)()) {
  return Status(Error::kInvalidArgument, std::string("emitCall: ") + arch::kUnsupportedFormWhy);
}

Status emitFixedCall(IsaAssembler& a, Emission& e, const void* target) {
  if (reinterpret_cast<uintptr_t>(target) % arch::kFieldAlign != 0) {
    return Status(Error::kMisalignedTarget, "emitFixedCall: the target is not 4-byte aligned (an A64 instruction must be)");
  }
  PATCHCALL_TRY(checkAligned(a, "emitFixedCall"));
  return addCall(a, e, Emission::Ref::kFixedCall, target);
}

Status emitPoll(IsaAssembler& a, Emission& e) {
  PATCHCALL_TRY(checkAligned(a, "emitSafepointPoll"));
  e.fixups.push_back({static_cast<uint32_t>(a.offset()), Emission::Ref::kSafepointFlag});
  PATCHCALL_TRY(embed(a, arch::pollCompare()));
  Emission::SlowPath p{a.newLabel(), a.newLabel()};
  PATCHCALL_TRY(asmjitStatus(a.cbnz(a64::w(arch::a64::kPollScratch), p.slow)));
  PATCHCALL_TRY(asmjitStatus(a.bind(p.back)));
  e.slowPaths.push_back(p);
  return Status::ok();
}

// The slow path keeps sp 16-byte aligned and saves the frame record its bl overwrites x30 of
// (the stub expects exactly this, runtime/arch/aarch64/safepoint_stub.h); then the veneers.
Status emitOutOfLine(IsaAssembler& a, Emission& e) {
  if (!e.slowPaths.empty() || !e.fixups.empty()) PATCHCALL_TRY(checkAligned(a, "install"));
  for (const Emission::SlowPath& p : e.slowPaths) {
    PATCHCALL_TRY(asmjitStatus(a.bind(p.slow)));
    PATCHCALL_TRY(asmjitStatus(a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16))));
    PATCHCALL_TRY(addCall(a, e, Emission::Ref::kSafepointStub, nullptr));
    PATCHCALL_TRY(asmjitStatus(a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16))));
    PATCHCALL_TRY(asmjitStatus(a.b(p.back)));
  }
  // One veneer per distinct target, in target order; each call names its own by index.
  e.veneers.clear();
  for (const Emission::Fixup& f : e.fixups) {
    if (f.ref != Emission::Ref::kSafepointFlag) e.veneers.push_back({0, f.ref, f.target});
  }
  auto less = [](const Emission::Veneer& x, const Emission::Veneer& y) { return veneerKey(x.ref, x.target) < veneerKey(y.ref, y.target); };
  auto same = [](const Emission::Veneer& x, const Emission::Veneer& y) { return x.ref == y.ref && x.target == y.target; };
  std::sort(e.veneers.begin(), e.veneers.end(), less);
  e.veneers.erase(std::unique(e.veneers.begin(), e.veneers.end(), same), e.veneers.end());
  if (e.veneers.empty()) return Status::ok();
  if (size_t pad = (kVeneerAlign - a.offset() % kVeneerAlign) % kVeneerAlign; pad != 0) PATCHCALL_TRY(embed(a, kFill.bytes, pad));
  for (Emission::Veneer& v : e.veneers) {
    v.at = static_cast<uint32_t>(a.offset());
    PATCHCALL_TRY(embed(a, kFill.bytes, arch::kVeneerSize));
  }
  for (Emission::Fixup& f : e.fixups) {
    if (f.ref == Emission::Ref::kSafepointFlag) continue;
    Emission::Veneer key{0, f.ref, f.target};
    f.veneer = static_cast<uint32_t>(std::lower_bound(e.veneers.begin(), e.veneers.end(), key, less) - e.veneers.begin());
  }
  return Status::ok();
}

Status link(const Emission& e, uintptr_t base, uint8_t* rw, const detail::LinkTargets& targets) {
  for (const Emission::Veneer& v : e.veneers) arch::encodeVeneer(resolve(v.ref, v.target, targets), rw + v.at);
  for (const Emission::Fixup& f : e.fixups) {
    uintptr_t insn = base + f.at;
    uintptr_t target = resolve(f.ref, f.target, targets);
    if (f.ref == Emission::Ref::kSafepointFlag) {
      uint32_t load[2];
      if (!arch::a64::encodePollLoad(insn, target, load)) {
        return Status(Error::kOutOfRange, "install: the safepoint flag is beyond adrp reach (+-4 GiB) of a poll");
      }
      std::memcpy(rw + f.at, load, sizeof load);
      continue;
    }
    uintptr_t destination = target;
    if (!arch::inReach(insn, target)) {
      if (f.veneer >= e.veneers.size()) return Status(Error::kEmitFailed, "install: a call has no veneer (emitOutOfLine did not run)");
      destination = base + e.veneers[f.veneer].at;
      if (!arch::inReach(insn, destination)) {
        return Status(Error::kOutOfRange, "install: a call's veneer is beyond bl reach (+-128 MiB) within the code");
      }
    }
    arch::encodeCall(arch::callFieldValue(arch::branchField(insn), destination), rw + f.at);
  }
  return Status::ok();
}

}  // namespace patchcall::jit::isa

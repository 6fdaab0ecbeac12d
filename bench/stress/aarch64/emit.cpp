// patchcall-stress on aarch64 — the caller groups' and targets' instructions (isa.h).
//
// Caller group registers (AAPCS64 callee-saved, so the BL sites' targets, the poll's stub and
// the yield's C++ keep them): x20 = frame, x19 = iterations left, x21 = key cells, x23 = the
// site's KeyCells, x22 = `pre` across the call. x9-x11 are scratch; x16 (IP0) belongs to the
// poll and the veneers. Memory order (versions.h says why each step is needed): `pre` is read
// with ldar and an `isb` follows it, an `isb` follows every call before `post` is read, and
// pool targets start with an `isb` before they read their cell.
#include <ucontext.h>

#include <cstddef>

#include "../asm_status.h"
#include "../callers.h"
#include "../isa.h"
#include "../versions.h"

namespace stress::isa {
namespace {

namespace a64 = asmjit::a64;
using patchcall::Status;

constexpr uint32_t kIsbSy = 15;  // isb's option: sy (the only one)

// x = value, in four moves (an A64 instruction holds 16 bits of immediate).
Status emitMov64(patchcall::jit::Assembler& a, const a64::Gp& x, uint64_t value) {
  PATCHCALL_TRY(asmStatus(a.movz(x, value & 0xFFFF)));
  for (uint32_t shift = 16; shift < 64; shift += 16) {
    PATCHCALL_TRY(asmStatus(a.movk(x, (value >> shift) & 0xFFFF, asmjit::arm::lsl(shift))));
  }
  return Status::ok();
}

}  // namespace

const char* const kName = "aarch64";
const uint8_t kTrapFillByte = 0x00;  // udf #0 (0x00000000), what the arena fills freed code with

std::vector<patchcall::SiteForm> siteForms() { return {patchcall::SiteForm::kDirect}; }

Status emitGroupEntry(patchcall::jit::Assembler& a) {
  PATCHCALL_TRY(asmStatus(a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -64))));  // sp stays 16-aligned
  PATCHCALL_TRY(asmStatus(a.mov(a64::x29, a64::sp)));
  PATCHCALL_TRY(asmStatus(a.stp(a64::x19, a64::x20, a64::ptr(a64::sp, 16))));
  PATCHCALL_TRY(asmStatus(a.stp(a64::x21, a64::x22, a64::ptr(a64::sp, 32))));
  PATCHCALL_TRY(asmStatus(a.stp(a64::x23, a64::x24, a64::ptr(a64::sp, 48))));
  PATCHCALL_TRY(asmStatus(a.mov(a64::x20, a64::x0)));
  PATCHCALL_TRY(asmStatus(a.mov(a64::x19, a64::x1)));
  return asmStatus(a.ldr(a64::x21, a64::ptr(a64::x20, offsetof(CallerFrame, cells))));
}

// x23 = &cells[key] ; ldar x22, [x23] ; isb (ldar takes no offset; `end` is at +0). The acquire
// keeps every later load (the pool cell in the target, `post`) from being satisfied before it.
// The isb is the serializing instruction invariant 3 speaks of ("once it has executed a
// serializing instruction"): on hardware the sync's membarrier already forces one on every
// core, but under qemu-user the ldar and the BL would share one translated block with the
// BL's old target compiled in, which the remap sync invalidates but cannot stop a vCPU that
// is already inside (the driver saw calls one version below `pre` without it).
Status emitLoadPre(patchcall::jit::Assembler& a, uint32_t keyCells) {
  static_assert(offsetof(KeyCells, end) == 0 && offsetof(KeyCells, begin) == 8);
  if (keyCells < 4096) {
    PATCHCALL_TRY(asmStatus(a.add(a64::x23, a64::x21, keyCells)));
  } else {
    PATCHCALL_TRY(emitMov64(a, a64::x9, keyCells));
    PATCHCALL_TRY(asmStatus(a.add(a64::x23, a64::x21, a64::x9)));
  }
  PATCHCALL_TRY(asmStatus(a.ldar(a64::x22, a64::ptr(a64::x23))));
  return asmStatus(a.isb(kIsbSy));
}

// isb ; ldr x10, [x23, #8] ; valid iff (x0 - pre) <= (post - pre), unsigned (one compare for
// both bounds). The isb: a data barrier does not order an instruction fetch, so without it the
// load of `begin` could be satisfied before the BL (or the target it reached) was fetched.
Status emitCheck(patchcall::jit::Assembler& a, uint32_t /*keyCells*/, const asmjit::Label& fail) {
  PATCHCALL_TRY(asmStatus(a.isb(kIsbSy)));
  PATCHCALL_TRY(asmStatus(a.ldr(a64::x10, a64::ptr(a64::x23, offsetof(KeyCells, begin)))));
  PATCHCALL_TRY(asmStatus(a.sub(a64::x9, a64::x0, a64::x22)));
  PATCHCALL_TRY(asmStatus(a.sub(a64::x11, a64::x10, a64::x22)));
  PATCHCALL_TRY(asmStatus(a.cmp(a64::x9, a64::x11)));
  return asmStatus(a.b_hi(fail));
}

Status emitGroupEnd(patchcall::jit::Assembler& a, const asmjit::Label& loop, const asmjit::Label& exit) {
  PATCHCALL_TRY(asmStatus(a.subs(a64::x19, a64::x19, 1)));
  PATCHCALL_TRY(asmStatus(a.b_ne(loop)));
  PATCHCALL_TRY(asmStatus(a.mov(a64::x0, a64::xzr)));
  PATCHCALL_TRY(asmStatus(a.bind(exit)));
  PATCHCALL_TRY(asmStatus(a.ldp(a64::x23, a64::x24, a64::ptr(a64::sp, 48))));
  PATCHCALL_TRY(asmStatus(a.ldp(a64::x21, a64::x22, a64::ptr(a64::sp, 32))));
  PATCHCALL_TRY(asmStatus(a.ldp(a64::x19, a64::x20, a64::ptr(a64::sp, 16))));
  PATCHCALL_TRY(asmStatus(a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 64))));
  return asmStatus(a.ret(a64::x30));
}

// x0 = returned, x22 = pre, x10 = post (emitCheck).
Status emitFailStub(patchcall::jit::Assembler& a, const asmjit::Label& fail, const asmjit::Label& exit, uint32_t index) {
  PATCHCALL_TRY(asmStatus(a.bind(fail)));
  PATCHCALL_TRY(asmStatus(a.str(a64::x0, a64::ptr(a64::x20, offsetof(CallerFrame, returned)))));
  PATCHCALL_TRY(asmStatus(a.str(a64::x22, a64::ptr(a64::x20, offsetof(CallerFrame, pre)))));
  PATCHCALL_TRY(asmStatus(a.str(a64::x10, a64::ptr(a64::x20, offsetof(CallerFrame, post)))));
  PATCHCALL_TRY(emitMov64(a, a64::x0, uint64_t{index} + 1));
  return asmStatus(a.b(exit));
}

// ldr x9, [x20, #32] ; subs x9, x9, #1 ; str x9, [x20, #32] ; b.ne skip ;
// stp x29, x30, [sp, #-16]! ; bl yield ; ldp x29, x30, [sp], #16 ; skip:
// The frame record is saved everywhere (a target's x30 is its return into the group); sp is
// 16-aligned at every instruction of this code.
Status emitYieldPoint(patchcall::jit::Assembler& a, void (*yield)(), bool /*atEntry*/) {
  asmjit::Label skip = a.newLabel();
  PATCHCALL_TRY(asmStatus(a.ldr(a64::x9, a64::ptr(a64::x20, kYieldCountdownOffset))));
  PATCHCALL_TRY(asmStatus(a.subs(a64::x9, a64::x9, 1)));
  PATCHCALL_TRY(asmStatus(a.str(a64::x9, a64::ptr(a64::x20, kYieldCountdownOffset))));
  PATCHCALL_TRY(asmStatus(a.b_ne(skip)));
  PATCHCALL_TRY(asmStatus(a.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16))));
  PATCHCALL_TRY(patchcall::jit::emitFixedCall(a, reinterpret_cast<const void*>(yield)));
  PATCHCALL_TRY(asmStatus(a.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16))));
  return asmStatus(a.bind(skip));
}

Status emitStrictStub(patchcall::jit::Assembler&, void (*)(), uint32_t) {
  return Status(patchcall::Error::kInvalidArgument, "--strict-toggle stubs: aarch64 has no toggle sites");
}

// A pool entry is 28 bytes.
size_t targetStride(bool spread) { return spread ? 0x110 : 32; }

// isb ; x0 = &cell ; ldr x0, [x0] ; ret. The isb: this entry may be reached through a BL that
// was rewritten after the updater stored the cell, and only a context synchronization keeps
// the load from being satisfied before the BL was fetched (versions.h).
Status emitPoolEntry(patchcall::jit::Assembler& a, const std::atomic<uint64_t>* cell) {
  PATCHCALL_TRY(asmStatus(a.isb(kIsbSy)));
  PATCHCALL_TRY(emitMov64(a, a64::x0, reinterpret_cast<uint64_t>(cell)));
  PATCHCALL_TRY(asmStatus(a.ldr(a64::x0, a64::ptr(a64::x0))));
  return asmStatus(a.ret(a64::x30));
}

Status emitTagEntry(patchcall::jit::Assembler& a, uint64_t tag) {
  PATCHCALL_TRY(emitMov64(a, a64::x0, tag));
  return asmStatus(a.ret(a64::x30));
}

FaultContext faultContext(int sig, const siginfo_t* info, const void* ucontext) {
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
  FaultContext f;
  f.pc = static_cast<uintptr_t>(uc->uc_mcontext.pc);
  // udf and brk report the trapping instruction itself.
  f.address = (sig == SIGSEGV || sig == SIGBUS) ? reinterpret_cast<uintptr_t>(info->si_addr) : f.pc;
  return f;
}

// A target a site's BL reached returns through x30 (the targets are leaves, or save x30
// around their yield call and restore it).
uintptr_t faultReturnAddress(const void* ucontext) {
  return static_cast<uintptr_t>(static_cast<const ucontext_t*>(ucontext)->uc_mcontext.regs[30]);
}

}  // namespace stress::isa

// tinyvm — the baseline JIT's A64 instructions (jit/backend.h; x86_64/backend.cpp is the same
// on x86-64).
//
// Frame (AAPCS64): stp x29, x30, [sp, #-16]! ; mov x29, sp ; sub sp, sp, #8*slots, slot i at
// [sp + 8i] (sp does not move in the body, and the slow path of a poll restores it), so sp is
// 16-byte aligned at every call and poll. Accumulator x0, which is also the first argument and
// the return register. Scratch x9-x11 (caller-saved temporaries); never x16/x17, which veneers
// and polls clobber. No callee-saved register is used, so none is saved. A64 arithmetic takes
// registers only (an immediate of 12 bits for add, sub, cmp), so operands are loaded first.
#include "jit/backend.h"

namespace tinyvm::jit {

namespace {
namespace a64 = asmjit::a64;

constexpr uint32_t kMaxSlots = 4095;  // ldr/str x, [sp, #imm12 * 8]
const a64::GpX kAcc = a64::x0, kScratchA = a64::x9, kScratchB = a64::x10, kQuotient = a64::x11;

a64::Mem frame(uint32_t slot) { return a64::ptr(a64::sp, static_cast<int32_t>(8 * slot)); }
bool isImm12(const Value& v) { return v.kind == Value::kConst && v.imm >= 0 && v.imm <= 4095; }

asmjit::arm::CondCode condOf(Op op) {
  using asmjit::arm::CondCode;
  switch (op) {
    case Op::kLt: return CondCode::kLT;
    case Op::kLe: return CondCode::kLE;
    case Op::kGt: return CondCode::kGT;
    case Op::kGe: return CondCode::kGE;
    case Op::kEq: return CondCode::kEQ;
    default: return CondCode::kNE;
  }
}

// movz (or movn, for mostly-ones values) and a movk per remaining 16-bit chunk.
void loadImm(a64::Assembler& a, const a64::GpX& reg, int64_t value) {
  uint64_t u = static_cast<uint64_t>(value);
  int zeros = 0, ones = 0;
  for (int i = 0; i < 4; ++i) {
    uint16_t c = static_cast<uint16_t>(u >> (16 * i));
    zeros += c == 0, ones += c == 0xFFFF;
  }
  bool inverted = ones > zeros;
  uint16_t skip = inverted ? 0xFFFF : 0;
  bool first = true;
  for (uint32_t i = 0; i < 4; ++i) {
    uint16_t c = static_cast<uint16_t>(u >> (16 * i));
    if (c == skip) continue;
    if (first) inverted ? a.movn(reg, static_cast<uint16_t>(~c), asmjit::arm::lsl(16 * i)) : a.movz(reg, c, asmjit::arm::lsl(16 * i));
    else a.movk(reg, c, asmjit::arm::lsl(16 * i));
    first = false;
  }
  if (first) inverted ? a.movn(reg, 0) : a.mov(reg, a64::xzr);  // -1 or 0
}

void load(a64::Assembler& a, const a64::GpX& reg, const Value& v) {
  switch (v.kind) {
    case Value::kConst: loadImm(a, reg, v.imm); break;
    case Value::kFrame: a.ldr(reg, frame(v.slot)); break;
    case Value::kAcc: if (reg.id() != kAcc.id()) a.mov(reg, kAcc); break;
  }
}

// `v` in a register: x0 when it is the accumulator, else loaded into `scratch`.
a64::GpX inRegister(a64::Assembler& a, const Value& v, const a64::GpX& scratch) {
  if (v.kind == Value::kAcc) return kAcc;
  load(a, scratch, v);
  return scratch;
}

void compare(a64::Assembler& a, const Value& va, const Value& vb) {
  a64::GpX ra = inRegister(a, va, kScratchA);
  if (isImm12(vb)) a.cmp(ra, vb.imm);
  else a.cmp(ra, inRegister(a, vb, kScratchB));
}

}  // namespace

patchcall::Status Backend::prologue(uint32_t frameSlots) {
  if (frameSlots > kMaxSlots) {
    return patchcall::Status(patchcall::Error::kEmitFailed,
                             "tinyvm: a frame of " + std::to_string(frameSlots) + " slots is beyond A64 ldr/str reach");
  }
  a_.stp(a64::x29, a64::x30, a64::ptr_pre(a64::sp, -16));
  a_.mov(a64::x29, a64::sp);
  for (uint32_t bytes = 8 * frameSlots; bytes > 0;) {  // sub takes a 12-bit immediate
    uint32_t step = bytes < 4080 ? bytes : 4080;
    a_.sub(a64::sp, a64::sp, step);
    bytes -= step;
  }
  for (uint32_t i = 0; i + 1 < frameSlots; i += 2) {
    if (8 * i <= 504) a_.stp(a64::xzr, a64::xzr, frame(i));  // stp's reach: imm7 * 8
    else a_.str(a64::xzr, frame(i)), a_.str(a64::xzr, frame(i + 1));
  }
  return patchcall::Status::ok();
}

void Backend::storeArg(uint32_t arg, uint32_t slot) { a_.str(a64::GpX(arg), frame(slot)); }

void Backend::store(uint32_t slot, const Value& v) {
  if (v.kind == Value::kConst && v.imm == 0) return (void)a_.str(a64::xzr, frame(slot));
  a_.str(inRegister(a_, v, kScratchA), frame(slot));
}

// sdiv already gives x / 0 = 0 and INT64_MIN / -1 = INT64_MIN (no trap), as tinyvm wants; the
// remainder a - (a / b) * b is then 0 for b = -1 and must be forced to 0 for b = 0.
void Backend::binary(Op op, const Value& a, const Value& b) {
  if ((op == Op::kAdd || op == Op::kSub) && isImm12(b)) {
    a64::GpX ra = inRegister(a_, a, kScratchA);
    op == Op::kAdd ? a_.add(kAcc, ra, b.imm) : a_.sub(kAcc, ra, b.imm);
    return;
  }
  if (op >= Op::kLt && op <= Op::kNe) {
    compare(a_, a, b);
    a_.cset(kAcc, condOf(op));
    return;
  }
  a64::GpX ra = inRegister(a_, a, kScratchA), rb = inRegister(a_, b, kScratchB);
  switch (op) {
    case Op::kAdd: a_.add(kAcc, ra, rb); break;
    case Op::kSub: a_.sub(kAcc, ra, rb); break;
    case Op::kMul: a_.mul(kAcc, ra, rb); break;
    case Op::kDiv: a_.sdiv(kAcc, ra, rb); break;
    default:  // kMod; the flags of the cmp survive sdiv and msub
      a_.cmp(rb, 0);
      a_.sdiv(kQuotient, ra, rb);
      a_.msub(kQuotient, kQuotient, rb, ra);
      a_.csel(kAcc, a64::xzr, kQuotient, asmjit::arm::CondCode::kEQ);
      break;
  }
}

void Backend::unary(Op op, const Value& v) {
  a64::GpX r = inRegister(a_, v, kScratchA);
  if (op == Op::kNeg) {
    a_.neg(kAcc, r);
  } else {
    a_.cmp(r, 0);
    a_.cset(kAcc, asmjit::arm::CondCode::kEQ);
  }
}

void Backend::branchUnless(Op op, const Value& a, const Value& b, const asmjit::Label& target) {
  compare(a_, a, b);
  a_.b(asmjit::arm::negateCond(condOf(op)), target);  // b.cond reaches +-1 MiB
}

void Backend::branchIfZero(const Value& v, const asmjit::Label& target) { a_.cbz(inRegister(a_, v, kScratchA), target); }

void Backend::jump(const asmjit::Label& target) { a_.b(target); }

// x0 is both the accumulator and the first argument: an argument in the accumulator moves to
// its register before x0 is loaded (no other argument is in the accumulator).
void Backend::passArgs(std::span<const Value> args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].kind == Value::kAcc) load(a_, a64::GpX(static_cast<uint32_t>(i)), args[i]);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].kind != Value::kAcc) load(a_, a64::GpX(static_cast<uint32_t>(i)), args[i]);
  }
}

void Backend::callLocal(const asmjit::Label& entry) { a_.bl(entry); }

void Backend::ret(const Value& v) {
  load(a_, kAcc, v);
  a_.mov(a64::sp, a64::x29);
  a_.ldp(a64::x29, a64::x30, a64::ptr_post(a64::sp, 16));
  a_.ret(a64::x30);
}

bool siteFormAvailable(patchcall::SiteForm form) {
  return form == patchcall::SiteForm::kDirect || form == patchcall::SiteForm::kAuto;
}
const char* siteFormUnavailableWhy() {
  return "aarch64 has only Direct sites (every BL is aligned and one store retargets it; the toggle and "
         "breakpoint forms are x86-64's): use --site-form direct or auto";
}

}  // namespace tinyvm::jit

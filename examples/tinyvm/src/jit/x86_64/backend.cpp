// tinyvm — the baseline JIT's x86-64 instructions (jit/backend.h; aarch64/backend.cpp is the
// same on A64).
//
// Frame: push rbp ; mov rbp, rsp ; then the slots below rbp (slot i at [rbp - 8(i+1)]), so rsp
// is 16-byte aligned at every call. Accumulator rax; scratch r11 (and rdx in a division).
// x86 ALU instructions take a memory or 32-bit immediate operand, so most operands are used
// where they are.
#include "jit/backend.h"

namespace tinyvm::jit {

namespace {
namespace x86 = asmjit::x86;

const x86::Gp kArgs[kMaxParams] = {x86::rdi, x86::rsi, x86::rdx, x86::rcx, x86::r8, x86::r9};

x86::Mem frame(uint32_t slot) { return x86::qword_ptr(x86::rbp, -8 * static_cast<int32_t>(slot + 1)); }
bool fitsImm32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

x86::CondCode condOf(Op op) {
  switch (op) {
    case Op::kLt: return x86::CondCode::kL;
    case Op::kLe: return x86::CondCode::kLE;
    case Op::kGt: return x86::CondCode::kG;
    case Op::kGe: return x86::CondCode::kGE;
    case Op::kEq: return x86::CondCode::kE;
    default: return x86::CondCode::kNE;
  }
}

void load(x86::Assembler& a, const x86::Gp& reg, const Value& v) {
  switch (v.kind) {
    case Value::kConst:
      if (v.imm == 0) a.xor_(reg.r32(), reg.r32());
      else a.mov(reg, asmjit::imm(v.imm));
      break;
    case Value::kFrame: a.mov(reg, frame(v.slot)); break;
    case Value::kAcc: if (reg.id() != x86::rax.id()) a.mov(reg, x86::rax); break;
  }
}

// Loads a into rax and returns b as an ALU operand (imm32, memory or r11).
asmjit::Operand operands(x86::Assembler& a, const Value& va, const Value& vb) {
  asmjit::Operand bop;
  if (vb.kind == Value::kAcc) {
    a.mov(x86::r11, x86::rax);
    bop = x86::r11;
  } else if (vb.kind == Value::kConst && fitsImm32(vb.imm)) {
    bop = asmjit::imm(vb.imm);
  } else if (vb.kind == Value::kConst) {
    a.mov(x86::r11, asmjit::imm(vb.imm));
    bop = x86::r11;
  } else {
    bop = frame(vb.slot);
  }
  load(a, x86::rax, va);
  return bop;
}

// x / 0 = x % 0 = 0; x / -1 = -x (idiv would raise #DE on INT64_MIN), x % -1 = 0.
void divide(x86::Assembler& a, bool modulo, const Value& va, const Value& vb) {
  load(a, x86::r11, vb);  // before rax is overwritten (b may be in rax)
  load(a, x86::rax, va);
  asmjit::Label special = a.newLabel(), done = a.newLabel();
  bool checks = !(vb.kind == Value::kConst && vb.imm != 0 && vb.imm != -1);
  if (checks) {
    a.lea(x86::rdx, x86::ptr(x86::r11, 1));
    a.cmp(x86::rdx, 1);
    a.jbe(special);
  }
  a.cqo();
  a.idiv(x86::r11);
  if (modulo) a.mov(x86::rax, x86::rdx);
  if (checks) {
    a.jmp(done);
    a.bind(special);
    if (modulo) {
      a.xor_(x86::eax, x86::eax);
    } else {
      a.neg(x86::rax);              // divisor -1
      a.and_(x86::rax, x86::r11);  // divisor 0: rax & 0 = 0; divisor -1: rax & ~0 = -x
    }
    a.bind(done);
  }
}

}  // namespace

patchcall::Status Backend::prologue(uint32_t frameSlots) {
  a_.push(x86::rbp);
  a_.mov(x86::rbp, x86::rsp);
  if (frameSlots <= 16) {
    for (uint32_t i = 0; i < frameSlots; ++i) a_.push(0);
  } else {
    a_.sub(x86::rsp, static_cast<int32_t>(8 * frameSlots));
    a_.xor_(x86::eax, x86::eax);
    for (uint32_t i = 0; i < frameSlots; ++i) a_.mov(x86::qword_ptr(x86::rsp, static_cast<int32_t>(8 * i)), x86::rax);
  }
  return patchcall::Status::ok();
}

void Backend::storeArg(uint32_t arg, uint32_t slot) { a_.mov(frame(slot), kArgs[arg]); }

void Backend::store(uint32_t slot, const Value& v) {
  switch (v.kind) {
    case Value::kAcc: a_.mov(frame(slot), x86::rax); break;
    case Value::kFrame: a_.mov(x86::r11, frame(v.slot)), a_.mov(frame(slot), x86::r11); break;
    case Value::kConst:
      if (fitsImm32(v.imm)) a_.mov(frame(slot), asmjit::imm(v.imm));
      else a_.mov(x86::r11, asmjit::imm(v.imm)), a_.mov(frame(slot), x86::r11);
      break;
  }
}

void Backend::binary(Op op, const Value& a, const Value& b) {
  if (op == Op::kDiv || op == Op::kMod) return divide(a_, op == Op::kMod, a, b);
  asmjit::Operand bop = operands(a_, a, b);
  switch (op) {
    case Op::kAdd: a_.emit(x86::Inst::kIdAdd, x86::rax, bop); break;
    case Op::kSub: a_.emit(x86::Inst::kIdSub, x86::rax, bop); break;
    case Op::kMul:
      if (bop.isImm()) a_.imul(x86::rax, x86::rax, bop.as<asmjit::Imm>());
      else a_.emit(x86::Inst::kIdImul, x86::rax, bop);
      break;
    default:  // a comparison: 0 or 1
      a_.emit(x86::Inst::kIdCmp, x86::rax, bop);
      a_.set(condOf(op), x86::al);
      a_.movzx(x86::eax, x86::al);
      break;
  }
}

void Backend::unary(Op op, const Value& v) {
  load(a_, x86::rax, v);
  if (op == Op::kNeg) {
    a_.neg(x86::rax);
  } else {
    a_.test(x86::rax, x86::rax);
    a_.sete(x86::al);
    a_.movzx(x86::eax, x86::al);
  }
}

void Backend::branchUnless(Op compare, const Value& a, const Value& b, const asmjit::Label& target) {
  asmjit::Operand bop = operands(a_, a, b);
  a_.emit(x86::Inst::kIdCmp, x86::rax, bop);
  a_.j(x86::negateCond(condOf(compare)), target);
}

void Backend::branchIfZero(const Value& v, const asmjit::Label& target) {
  if (v.kind == Value::kAcc) a_.test(x86::rax, x86::rax);
  else a_.cmp(frame(v.slot), 0);  // the JIT folds constant conditions
  a_.jz(target);
}

void Backend::jump(const asmjit::Label& target) { a_.jmp(target); }

void Backend::passArgs(std::span<const Value> args) {
  for (size_t i = 0; i < args.size(); ++i) load(a_, kArgs[i], args[i]);  // rax is no argument register
}

void Backend::callLocal(const asmjit::Label& entry) { a_.call(entry); }

void Backend::ret(const Value& v) {
  load(a_, x86::rax, v);
  a_.leave();
  a_.ret();
}

bool siteFormAvailable(patchcall::SiteForm) { return true; }
const char* siteFormUnavailableWhy() { return ""; }

}  // namespace tinyvm::jit

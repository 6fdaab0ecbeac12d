// tinyvm — the baseline JIT.
#include "jit_compiler.h"

#include <optional>
#include <vector>

namespace tinyvm {
namespace {

namespace x86 = asmjit::x86;
using patchcall::Error;
using patchcall::Status;

// Collects the first asmjit error so emission code can stay linear.
class ErrorCollector : public asmjit::ErrorHandler {
 public:
  void handleError(asmjit::Error err, const char* message, asmjit::BaseEmitter*) override {
    if (error == asmjit::kErrorOk) error = err, text = message;
  }
  asmjit::Error error = asmjit::kErrorOk;
  std::string text;
};

// Operand-stack depth before each instruction; -1 where unreachable.
std::optional<std::vector<int>> stackDepths(const Function& f, std::string* why) {
  std::vector<int> depth(f.code.size() + 1, -1);
  std::vector<uint32_t> work{0};
  depth[0] = 0;
  auto flow = [&](uint32_t to, int d) {
    if (to >= f.code.size()) return *why = "jump out of the function", false;
    if (depth[to] == -1) depth[to] = d, work.push_back(to);
    else if (depth[to] != d) return *why = "inconsistent stack depth at " + std::to_string(to), false;
    return true;
  };
  while (!work.empty()) {
    uint32_t pc = work.back();
    work.pop_back();
    const Instr& in = f.code[pc];
    int d = depth[pc];
    int pops = 0, pushes = 0;
    switch (in.op) {
      case Op::kConst: case Op::kLoad: pushes = 1; break;
      case Op::kStore: case Op::kPop: case Op::kJumpIfZero: case Op::kRet: pops = 1; break;
      case Op::kNeg: case Op::kNot: pops = 1, pushes = 1; break;
      case Op::kCall: pops = static_cast<int>(in.b), pushes = 1; break;
      case Op::kJump: break;
      default: pops = 2, pushes = 1; break;
    }
    if (d < pops) return *why = "operand stack underflow at " + std::to_string(pc), std::nullopt;
    int next = d - pops + pushes;
    if (next > static_cast<int>(f.maxStack)) return *why = "operand stack exceeds maxStack at " + std::to_string(pc), std::nullopt;
    if ((in.op == Op::kLoad || in.op == Op::kStore) && in.a >= f.numLocals) return *why = "bad local", std::nullopt;
    bool ok = true;
    if (in.op == Op::kJump) ok = flow(in.a, next);
    else if (in.op == Op::kJumpIfZero) ok = flow(in.a, next) && flow(pc + 1, next);
    else if (in.op != Op::kRet) ok = flow(pc + 1, next);
    if (!ok) return std::nullopt;
  }
  return depth;
}

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

bool isCompare(Op op) { return op >= Op::kLt && op <= Op::kNe; }
bool fitsImm32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

class Codegen {
 public:
  Codegen(patchcall::jit::Assembler& a, const Function& f, const JitEnv& env, const JitOptions& o, JitReport& r)
      : a_(a), f_(f), env_(env), o_(o), report_(r) {}

  Status run() {
    std::string why;
    std::optional<std::vector<int>> depth = stackDepths(f_, &why);
    if (!depth) return Status(Error::kInvalidArgument, "tinyvm: bytecode of '" + f_.name + "' rejected: " + why);
    std::vector<bool> isTarget(f_.code.size() + 1, false);
    for (const Instr& in : f_.code) {
      if (in.op == Op::kJump || in.op == Op::kJumpIfZero) isTarget[in.a] = true;
    }
    labels_.resize(f_.code.size());
    for (size_t pc = 0; pc < f_.code.size(); ++pc) {
      if (isTarget[pc]) labels_[pc] = a_.newLabel();
    }

    entry_ = a_.newLabel();
    a_.bind(entry_);
    a_.push(x86::rbp);
    a_.mov(x86::rbp, x86::rsp);
    // The frame starts zeroed: patchcall scans stacks conservatively for addresses inside
    // retired code, and a stale return address left in an unused slot (say, from the
    // lazy-compile stub that ran here a moment ago) would pin that stub for as long as this
    // frame keeps being recreated at the same depth.
    uint32_t frameSlots = (f_.numLocals + f_.maxStack + 1) & ~1u;  // keeps rsp 16-byte aligned
    if (frameSlots <= 16) {
      for (uint32_t i = 0; i < frameSlots; ++i) a_.push(0);
    } else {
      a_.sub(x86::rsp, static_cast<int32_t>(8 * frameSlots));
      a_.xor_(x86::eax, x86::eax);
      for (uint32_t i = 0; i < frameSlots; ++i) a_.mov(x86::qword_ptr(x86::rsp, static_cast<int32_t>(8 * i)), x86::rax);
    }
    if (o_.polls) PATCHCALL_TRY(poll());
    static const x86::Gp kArgs[kMaxParams] = {x86::rdi, x86::rsi, x86::rdx, x86::rcx, x86::r8, x86::r9};
    for (uint32_t i = 0; i < f_.arity; ++i) a_.mov(local(i), kArgs[i]);

    bool dead = false;
    for (uint32_t pc = 0; pc < f_.code.size(); ++pc) {
      if (isTarget[pc]) {
        // Every path into a label leaves all operands in their slots.
        if (!dead) flush(vs_.size());
        a_.bind(labels_[pc]);
        dead = (*depth)[pc] < 0;
        if (!dead) vs_.assign(static_cast<size_t>((*depth)[pc]), Entry{Entry::kSlot});
      }
      if (dead || (*depth)[pc] < 0) continue;
      if (vs_.size() != static_cast<size_t>((*depth)[pc])) {
        return Status(Error::kInvalidArgument, "tinyvm: JIT stack model out of step in '" + f_.name + "'");
      }
      const Instr& in = f_.code[pc];
      // A comparison feeding a conditional jump becomes cmp + jcc.
      if (isCompare(in.op) && pc + 1 < f_.code.size() && f_.code[pc + 1].op == Op::kJumpIfZero && !isTarget[pc + 1]) {
        compareAndBranch(in.op, f_.code[pc + 1].a);
        ++pc;
        continue;
      }
      PATCHCALL_TRY(instruction(in, pc, &dead));
    }
    return Status::ok();
  }

 private:
  struct Entry {
    enum Kind { kConst, kLocal, kSlot, kRax } kind = kSlot;
    int64_t imm = 0;
    uint32_t local = 0;
  };

  x86::Mem local(uint32_t i) const { return x86::qword_ptr(x86::rbp, -8 * static_cast<int32_t>(i + 1)); }
  x86::Mem slot(size_t depth) const { return local(f_.numLocals + static_cast<uint32_t>(depth)); }

  Status poll() {
    ++report_.polls;
    return patchcall::jit::emitSafepointPoll(a_);
  }

  // Materializes entry `d` into its frame slot (r11 is the scratch register).
  void spill(size_t d) {
    Entry& e = vs_[d];
    switch (e.kind) {
      case Entry::kSlot: return;
      case Entry::kRax: a_.mov(slot(d), x86::rax); break;
      case Entry::kLocal: a_.mov(x86::r11, local(e.local)), a_.mov(slot(d), x86::r11); break;
      case Entry::kConst:
        if (fitsImm32(e.imm)) a_.mov(slot(d), asmjit::imm(e.imm));
        else a_.mov(x86::r11, asmjit::imm(e.imm)), a_.mov(slot(d), x86::r11);
        break;
    }
    e.kind = Entry::kSlot;
  }
  void flush(size_t count) {
    for (size_t d = 0; d < count; ++d) spill(d);
  }
  void spillRax() {
    for (size_t d = 0; d < vs_.size(); ++d) {
      if (vs_[d].kind == Entry::kRax) spill(d);
    }
  }

  void load(const x86::Gp& reg, const Entry& e, size_t d) {
    switch (e.kind) {
      case Entry::kConst:
        if (e.imm == 0) a_.xor_(reg.r32(), reg.r32());
        else a_.mov(reg, asmjit::imm(e.imm));
        break;
      case Entry::kLocal: a_.mov(reg, local(e.local)); break;
      case Entry::kSlot: a_.mov(reg, slot(d)); break;
      case Entry::kRax: if (reg.id() != x86::rax.id()) a_.mov(reg, x86::rax); break;
    }
  }

  // Pops b and a and loads a into rax; returns b as an operand (imm32, memory or r11).
  asmjit::Operand binaryOperands() {
    Entry b = vs_.back();
    vs_.pop_back();
    Entry a = vs_.back();
    vs_.pop_back();
    size_t da = vs_.size(), db = da + 1;
    if (a.kind != Entry::kRax && b.kind != Entry::kRax) spillRax();
    asmjit::Operand bop;
    if (b.kind == Entry::kRax) {
      a_.mov(x86::r11, x86::rax);
      bop = x86::r11;
    } else if (b.kind == Entry::kConst && fitsImm32(b.imm)) {
      bop = asmjit::imm(b.imm);
    } else if (b.kind == Entry::kConst) {
      a_.mov(x86::r11, asmjit::imm(b.imm));
      bop = x86::r11;
    } else {
      bop = b.kind == Entry::kLocal ? local(b.local) : slot(db);
    }
    load(x86::rax, a, da);
    return bop;
  }

  void pushRax() { vs_.push_back(Entry{Entry::kRax}); }

  void compareAndBranch(Op op, uint32_t target) {
    // Everything below the operands goes to its slot first: the branch target expects slots.
    Entry b = vs_[vs_.size() - 1], a = vs_[vs_.size() - 2];
    vs_.resize(vs_.size() - 2);
    flush(vs_.size());
    vs_.push_back(a), vs_.push_back(b);
    asmjit::Operand bop = binaryOperands();
    a_.emit(x86::Inst::kIdCmp, x86::rax, bop);
    a_.j(x86::negateCond(condOf(op)), labels_[target]);
  }

  void divide(bool modulo) {
    Entry b = vs_.back();
    vs_.pop_back();
    Entry a = vs_.back();
    vs_.pop_back();
    size_t da = vs_.size(), db = da + 1;
    if (a.kind != Entry::kRax && b.kind != Entry::kRax) spillRax();
    load(x86::r11, b, db);  // before rax is overwritten (b may be in rax)
    load(x86::rax, a, da);
    asmjit::Label special = a_.newLabel(), done = a_.newLabel();
    bool checks = !(b.kind == Entry::kConst && b.imm != 0 && b.imm != -1);
    if (checks) {
      // x / 0 = x % 0 = 0; x / -1 = -x (no #DE on INT64_MIN), x % -1 = 0.
      a_.lea(x86::rdx, x86::ptr(x86::r11, 1));
      a_.cmp(x86::rdx, 1);
      a_.jbe(special);
    }
    a_.cqo();
    a_.idiv(x86::r11);
    if (modulo) a_.mov(x86::rax, x86::rdx);
    if (checks) {
      a_.jmp(done);
      a_.bind(special);
      if (modulo) {
        a_.xor_(x86::eax, x86::eax);
      } else {
        a_.neg(x86::rax);     // divisor -1
        a_.and_(x86::rax, x86::r11);  // divisor 0: rax & 0 = 0; divisor -1: rax & ~0 = -x
      }
      a_.bind(done);
    }
    pushRax();
  }

  Status call(const Instr& in) {
    size_t argc = in.b, base = vs_.size() - argc;
    flush(base);
    static const x86::Gp kArgs[kMaxParams] = {x86::rdi, x86::rsi, x86::rdx, x86::rcx, x86::r8, x86::r9};
    for (size_t i = 0; i < argc; ++i) load(kArgs[i], vs_[base + i], base + i);
    vs_.resize(base);
    if (o_.calls == CallMode::kHardwired) {
      if (in.a == f_.index) {
        a_.call(entry_);
        ++report_.fixedCalls;
        pushRax();
        return Status::ok();
      }
      if (const void* code = env_.compiledCodeOf ? env_.compiledCodeOf(in.a) : nullptr) {
        PATCHCALL_TRY(patchcall::jit::emitFixedCall(a_, code));
        ++report_.fixedCalls;
        pushRax();
        return Status::ok();
      }
      ++report_.hardwiredFallbacks;
    }
    PATCHCALL_TRY(patchcall::jit::emitCall(a_, env_.keyOf(in.a), o_.siteForm));
    ++report_.sites;
    pushRax();
    return Status::ok();
  }

  Status instruction(const Instr& in, uint32_t pc, bool* dead) {
    switch (in.op) {
      case Op::kConst:
        vs_.push_back(Entry{Entry::kConst, in.imm});
        break;
      case Op::kLoad:
        vs_.push_back(Entry{Entry::kLocal, 0, in.a});
        break;
      case Op::kStore: {
        Entry v = vs_.back();
        vs_.pop_back();
        for (size_t d = 0; d < vs_.size(); ++d) {  // deferred reads of the old value
          if (vs_[d].kind == Entry::kLocal && vs_[d].local == in.a) spill(d);
        }
        switch (v.kind) {
          case Entry::kRax: a_.mov(local(in.a), x86::rax); break;
          case Entry::kConst:
            if (fitsImm32(v.imm)) a_.mov(local(in.a), asmjit::imm(v.imm));
            else a_.mov(x86::r11, asmjit::imm(v.imm)), a_.mov(local(in.a), x86::r11);
            break;
          case Entry::kLocal: a_.mov(x86::r11, local(v.local)), a_.mov(local(in.a), x86::r11); break;
          case Entry::kSlot: a_.mov(x86::r11, slot(vs_.size())), a_.mov(local(in.a), x86::r11); break;
        }
        break;
      }
      case Op::kPop:
        vs_.pop_back();
        break;
      case Op::kAdd: case Op::kSub: case Op::kMul: {
        asmjit::Operand bop = binaryOperands();
        if (in.op == Op::kMul && bop.isImm()) a_.imul(x86::rax, x86::rax, bop.as<asmjit::Imm>());
        else a_.emit(in.op == Op::kAdd ? x86::Inst::kIdAdd : in.op == Op::kSub ? x86::Inst::kIdSub : x86::Inst::kIdImul, x86::rax, bop);
        pushRax();
        break;
      }
      case Op::kDiv: case Op::kMod:
        divide(in.op == Op::kMod);
        break;
      case Op::kLt: case Op::kLe: case Op::kGt: case Op::kGe: case Op::kEq: case Op::kNe: {
        asmjit::Operand bop = binaryOperands();
        a_.emit(x86::Inst::kIdCmp, x86::rax, bop);
        a_.set(condOf(in.op), x86::al);
        a_.movzx(x86::eax, x86::al);
        pushRax();
        break;
      }
      case Op::kNeg: case Op::kNot: {
        Entry v = vs_.back();
        vs_.pop_back();
        if (v.kind == Entry::kConst) {  // fold
          vs_.push_back(Entry{Entry::kConst, in.op == Op::kNeg ? wrapNeg(v.imm) : int64_t{v.imm == 0}});
          break;
        }
        if (v.kind != Entry::kRax) spillRax();
        load(x86::rax, v, vs_.size());
        if (in.op == Op::kNeg) {
          a_.neg(x86::rax);
        } else {
          a_.test(x86::rax, x86::rax);
          a_.sete(x86::al);
          a_.movzx(x86::eax, x86::al);
        }
        pushRax();
        break;
      }
      case Op::kJump:
        flush(vs_.size());
        if (in.a <= pc && o_.polls) PATCHCALL_TRY(poll());  // loop back-edge
        a_.jmp(labels_[in.a]);
        *dead = true;
        break;
      case Op::kJumpIfZero: {
        Entry c = vs_.back();
        vs_.pop_back();
        flush(vs_.size());
        if (c.kind == Entry::kConst) {
          if (c.imm == 0) a_.jmp(labels_[in.a]), *dead = true;
          break;
        }
        if (c.kind == Entry::kRax) a_.test(x86::rax, x86::rax);
        else a_.cmp(c.kind == Entry::kLocal ? local(c.local) : slot(vs_.size()), 0);
        a_.jz(labels_[in.a]);
        break;
      }
      case Op::kCall:
        return call(in);
      case Op::kRet: {
        Entry v = vs_.back();
        vs_.pop_back();
        load(x86::rax, v, vs_.size());
        a_.leave();
        a_.ret();
        *dead = true;
        break;
      }
    }
    return Status::ok();
  }

  patchcall::jit::Assembler& a_;
  const Function& f_;
  const JitEnv& env_;
  const JitOptions& o_;
  JitReport& report_;
  std::vector<asmjit::Label> labels_;
  std::vector<Entry> vs_;
  asmjit::Label entry_;
};

}  // namespace

patchcall::Result<patchcall::Blob> jitCompile(patchcall::Runtime& rt, const Function& f, const JitEnv& env,
                                              const JitOptions& options, JitReport* report) {
  JitReport local;
  JitReport& r = report != nullptr ? *report : local;
  r = JitReport{};
  patchcall::jit::Assembler a(rt);
  ErrorCollector errors;
  a.setErrorHandler(&errors);
  Codegen gen(a, f, env, options, r);
  PATCHCALL_TRY(gen.run());
  if (errors.error != asmjit::kErrorOk) {
    return Status(Error::kEmitFailed, "tinyvm: asmjit failed compiling '" + f.name + "': " + errors.text);
  }
  // Named for perf and gdb; the frame-pointer prologue above makes the frame unwindable
  // (exceptions, backtrace(), gdb's bt). Several returns and the poll slow paths after the
  // code: only the prologue is a fixed place.
  patchcall::Result<patchcall::Blob> blob =
      patchcall::jit::install(a, patchcall::CodeInfo{f.name, {}, patchcall::FrameLayout::kFramePointerAnyEpilogue});
  if (blob) {
    r.codeSize = blob->size;
    for (const patchcall::SiteSpec& s : a.sites()) r.siteOffsets.push_back(s.offset);
  }
  return blob;
}

}  // namespace tinyvm

// tinyvm — the baseline JIT, ISA-neutral: bytecode checks, the operand-stack model, sites and
// polls. The instructions come from jit/backend.h (the host ISA's jit/<isa>/backend.cpp).
#include "jit_compiler.h"

#include <optional>
#include <utility>
#include <vector>

#include "jit/backend.h"

namespace tinyvm {
namespace {

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

bool isCompare(Op op) { return op >= Op::kLt && op <= Op::kNe; }

// The ISA-neutral translation: a virtual operand stack that defers constants and local reads
// and keeps one value in the accumulator; the backend (jit/backend.h) emits each operation.
class Codegen {
 public:
  Codegen(patchcall::jit::Assembler& a, const Function& f, const JitEnv& env, const JitOptions& o, JitReport& r)
      : a_(a), isa_(a), f_(f), env_(env), o_(o), report_(r) {}

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
    // The frame starts zeroed: patchcall scans stacks conservatively for addresses inside
    // retired code, and a stale return address left in an unused slot (say, from the
    // lazy-compile stub that ran here a moment ago) would pin that stub for as long as this
    // frame keeps being recreated at the same depth.
    PATCHCALL_TRY(isa_.prologue((f_.numLocals + f_.maxStack + 1) & ~1u));
    if (o_.polls) PATCHCALL_TRY(poll());
    for (uint32_t i = 0; i < f_.arity; ++i) isa_.storeArg(i, i);

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
      // A comparison feeding a conditional jump becomes one compare-and-branch.
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
    enum Kind { kConst, kLocal, kSlot, kAcc } kind = kSlot;
    int64_t imm = 0;
    uint32_t local = 0;
  };

  uint32_t slotOf(size_t depth) const { return f_.numLocals + static_cast<uint32_t>(depth); }
  // Entry `e` at stack depth `d` as the backend's operand.
  jit::Value value(const Entry& e, size_t d) const {
    switch (e.kind) {
      case Entry::kConst: return {jit::Value::kConst, e.imm, 0};
      case Entry::kLocal: return {jit::Value::kFrame, 0, e.local};
      case Entry::kSlot: return {jit::Value::kFrame, 0, slotOf(d)};
      case Entry::kAcc: break;
    }
    return {jit::Value::kAcc, 0, 0};
  }

  Status poll() {
    ++report_.polls;
    return patchcall::jit::emitSafepointPoll(a_);
  }

  // Materializes entry `d` into its frame slot.
  void spill(size_t d) {
    Entry& e = vs_[d];
    if (e.kind == Entry::kSlot) return;
    isa_.store(slotOf(d), value(e, d));
    e.kind = Entry::kSlot;
  }
  void flush(size_t count) {
    for (size_t d = 0; d < count; ++d) spill(d);
  }
  void spillAcc() {
    for (size_t d = 0; d < vs_.size(); ++d) {
      if (vs_[d].kind == Entry::kAcc) spill(d);
    }
  }
  void pushAcc() { vs_.push_back(Entry{Entry::kAcc}); }

  // Pops b and a; an accumulator entry below them goes to its slot (the result overwrites it).
  std::pair<jit::Value, jit::Value> popOperands() {
    Entry b = vs_.back();
    vs_.pop_back();
    Entry a = vs_.back();
    vs_.pop_back();
    size_t da = vs_.size();
    if (a.kind != Entry::kAcc && b.kind != Entry::kAcc) spillAcc();
    return {value(a, da), value(b, da + 1)};
  }

  void compareAndBranch(Op op, uint32_t target) {
    // Everything below the operands goes to its slot first: the branch target expects slots.
    Entry b = vs_[vs_.size() - 1], a = vs_[vs_.size() - 2];
    vs_.resize(vs_.size() - 2);
    flush(vs_.size());
    vs_.push_back(a), vs_.push_back(b);
    auto [va, vb] = popOperands();
    isa_.branchUnless(op, va, vb, labels_[target]);
  }

  Status call(const Instr& in) {
    size_t argc = in.b, base = vs_.size() - argc;
    flush(base);
    jit::Value args[kMaxParams];
    for (size_t i = 0; i < argc; ++i) args[i] = value(vs_[base + i], base + i);
    isa_.passArgs(std::span<const jit::Value>(args, argc));
    vs_.resize(base);
    if (o_.calls == CallMode::kHardwired) {
      if (in.a == f_.index) {
        isa_.callLocal(entry_);
        ++report_.fixedCalls;
        pushAcc();
        return Status::ok();
      }
      if (const void* code = env_.compiledCodeOf ? env_.compiledCodeOf(in.a) : nullptr) {
        PATCHCALL_TRY(patchcall::jit::emitFixedCall(a_, code));
        ++report_.fixedCalls;
        pushAcc();
        return Status::ok();
      }
      ++report_.hardwiredFallbacks;
    }
    PATCHCALL_TRY(patchcall::jit::emitCall(a_, env_.keyOf(in.a), o_.siteForm));
    ++report_.sites;
    pushAcc();
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
        isa_.store(in.a, value(v, vs_.size()));
        break;
      }
      case Op::kPop:
        vs_.pop_back();
        break;
      case Op::kAdd: case Op::kSub: case Op::kMul: case Op::kDiv: case Op::kMod:
      case Op::kLt: case Op::kLe: case Op::kGt: case Op::kGe: case Op::kEq: case Op::kNe: {
        auto [va, vb] = popOperands();
        isa_.binary(in.op, va, vb);
        pushAcc();
        break;
      }
      case Op::kNeg: case Op::kNot: {
        Entry v = vs_.back();
        vs_.pop_back();
        if (v.kind == Entry::kConst) {  // fold
          vs_.push_back(Entry{Entry::kConst, in.op == Op::kNeg ? wrapNeg(v.imm) : int64_t{v.imm == 0}});
          break;
        }
        if (v.kind != Entry::kAcc) spillAcc();
        isa_.unary(in.op, value(v, vs_.size()));
        pushAcc();
        break;
      }
      case Op::kJump:
        flush(vs_.size());
        if (in.a <= pc && o_.polls) PATCHCALL_TRY(poll());  // loop back-edge
        isa_.jump(labels_[in.a]);
        *dead = true;
        break;
      case Op::kJumpIfZero: {
        Entry c = vs_.back();
        vs_.pop_back();
        flush(vs_.size());
        if (c.kind == Entry::kConst) {
          if (c.imm == 0) isa_.jump(labels_[in.a]), *dead = true;
          break;
        }
        isa_.branchIfZero(value(c, vs_.size()), labels_[in.a]);
        break;
      }
      case Op::kCall:
        return call(in);
      case Op::kRet: {
        Entry v = vs_.back();
        vs_.pop_back();
        isa_.ret(value(v, vs_.size()));
        *dead = true;
        break;
      }
    }
    return Status::ok();
  }

  patchcall::jit::Assembler& a_;
  jit::Backend isa_;
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
  // Named for perf and gdb; the backend's frame-pointer prologue makes the frame unwindable
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

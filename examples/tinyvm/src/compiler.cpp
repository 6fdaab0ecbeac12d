// tinyvm — the bytecode compiler.
#include "compiler.h"

#include <algorithm>
#include <unordered_map>

namespace tinyvm {
namespace {

struct CompileError {
  Diagnostic diagnostic;
};

struct Signature {
  uint32_t index;
  uint32_t arity;
};

class FunctionCompiler {
 public:
  FunctionCompiler(const Source& src, const std::unordered_map<std::string, Signature>& table, Function& out)
      : src_(src), table_(table), f_(out) {}

  void compile(const FunctionDecl& decl) {
    scopes_.emplace_back();
    for (const Param& p : decl.params) {
      if (scopes_.back().count(p.name) != 0) fail(p.pos, "duplicate parameter '" + p.name + "'");
      scopes_.back()[p.name] = f_.numLocals++;
    }
    statements(decl.body);
    emit({Op::kConst});  // falling off the end returns 0
    emit({Op::kRet});
  }

 private:
  [[noreturn]] void fail(SourcePos pos, std::string message) {
    throw CompileError{makeDiagnostic(src_, pos, std::move(message))};
  }

  uint32_t here() const { return static_cast<uint32_t>(f_.code.size()); }

  void emit(Instr i) {
    switch (i.op) {
      case Op::kConst: case Op::kLoad: depth_ += 1; break;
      case Op::kStore: case Op::kPop: case Op::kJumpIfZero: case Op::kRet: depth_ -= 1; break;
      case Op::kAdd: case Op::kSub: case Op::kMul: case Op::kDiv: case Op::kMod:
      case Op::kLt: case Op::kLe: case Op::kGt: case Op::kGe: case Op::kEq: case Op::kNe: depth_ -= 1; break;
      case Op::kCall: depth_ = depth_ - static_cast<int>(i.b) + 1; break;
      case Op::kNeg: case Op::kNot: case Op::kJump: break;
    }
    f_.maxStack = std::max(f_.maxStack, static_cast<uint32_t>(std::max(depth_, 0)));
    f_.code.push_back(i);
  }
  void patch(uint32_t at, uint32_t target) { f_.code[at].a = target; }

  void statements(const std::vector<std::unique_ptr<Stmt>>& list) {
    scopes_.emplace_back();
    for (const auto& s : list) statement(*s);
    scopes_.pop_back();
  }

  std::optional<uint32_t> lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return std::nullopt;
  }

  uint32_t variable(const std::string& name, SourcePos pos) {
    std::optional<uint32_t> slot = lookup(name);
    if (slot) return *slot;
    if (table_.count(name) != 0) fail(pos, "'" + name + "' is a function, not a variable; call it as " + name + "(...)");
    fail(pos, "unknown variable '" + name + "'");
  }

  void statement(const Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::kVar: {
        expression(*s.expr);  // before the declaration: `var x = x + 1;` reads the outer x
        if (scopes_.back().count(s.name) != 0) fail(s.pos, "variable '" + s.name + "' is already declared in this block");
        uint32_t slot = f_.numLocals++;
        scopes_.back()[s.name] = slot;
        emit({Op::kStore, slot});
        break;
      }
      case Stmt::Kind::kAssign: {
        uint32_t slot = variable(s.name, s.pos);
        expression(*s.expr);
        emit({Op::kStore, slot});
        break;
      }
      case Stmt::Kind::kIf: {
        expression(*s.expr);
        uint32_t toElse = here();
        emit({Op::kJumpIfZero});
        statements(s.body);
        if (s.orElse.empty()) {
          patch(toElse, here());
        } else {
          uint32_t toEnd = here();
          emit({Op::kJump});
          patch(toElse, here());
          statements(s.orElse);
          patch(toEnd, here());
        }
        break;
      }
      case Stmt::Kind::kWhile: {
        uint32_t top = here();
        expression(*s.expr);
        uint32_t toEnd = here();
        emit({Op::kJumpIfZero});
        statements(s.body);
        emit({Op::kJump, top});
        patch(toEnd, here());
        break;
      }
      case Stmt::Kind::kReturn:
        if (s.expr) expression(*s.expr);
        else emit({Op::kConst});
        emit({Op::kRet});
        break;
      case Stmt::Kind::kExpr:
        expression(*s.expr);
        emit({Op::kPop});
        break;
      case Stmt::Kind::kBlock:
        statements(s.body);
        break;
    }
  }

  void expression(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kInt:
        emit({Op::kConst, 0, 0, e.value});
        return;
      case Expr::Kind::kVar:
        emit({Op::kLoad, variable(e.name, e.pos)});
        return;
      case Expr::Kind::kUnary:
        expression(*e.operands[0]);
        emit({e.unary == UnaryOp::kNeg ? Op::kNeg : Op::kNot});
        return;
      case Expr::Kind::kCall: {
        auto it = table_.find(e.name);
        if (it == table_.end()) {
          if (lookup(e.name)) fail(e.pos, "'" + e.name + "' is a variable, not a function");
          fail(e.pos, "unknown function '" + e.name + "'");
        }
        uint32_t argc = static_cast<uint32_t>(e.operands.size());
        if (argc != it->second.arity) {
          fail(e.pos, "function '" + e.name + "' takes " + std::to_string(it->second.arity) + " argument" +
                          (it->second.arity == 1 ? "" : "s") + ", " + std::to_string(argc) + " given");
        }
        for (const auto& arg : e.operands) expression(*arg);
        emit({Op::kCall, it->second.index, argc});
        return;
      }
      case Expr::Kind::kBinary:
        break;
    }
    if (e.binary == BinaryOp::kAnd || e.binary == BinaryOp::kOr) {
      shortCircuit(e);
      return;
    }
    expression(*e.operands[0]);
    expression(*e.operands[1]);
    static const Op kOps[] = {Op::kAdd, Op::kSub, Op::kMul, Op::kDiv, Op::kMod, Op::kLt,
                              Op::kLe,  Op::kGt,  Op::kGe,  Op::kEq,  Op::kNe};
    emit({kOps[static_cast<int>(e.binary)]});
  }

  // a && b:  a; jz F; b; jz F; 1; jmp E; F: 0; E:
  // a || b:  a; jz R; 1; jmp E; R: b; jz F; 1; jmp E; F: 0; E:
  void shortCircuit(const Expr& e) {
    std::vector<uint32_t> toFalse, toEnd;
    expression(*e.operands[0]);
    if (e.binary == BinaryOp::kAnd) {
      toFalse.push_back(here());
      emit({Op::kJumpIfZero});
    } else {
      uint32_t toRhs = here();
      emit({Op::kJumpIfZero});
      emit({Op::kConst, 0, 0, 1});
      toEnd.push_back(here());
      emit({Op::kJump});
      depth_ -= 1;  // the constant above is on the other path only
      patch(toRhs, here());
    }
    expression(*e.operands[1]);
    toFalse.push_back(here());
    emit({Op::kJumpIfZero});
    emit({Op::kConst, 0, 0, 1});
    toEnd.push_back(here());
    emit({Op::kJump});
    depth_ -= 1;
    for (uint32_t at : toFalse) patch(at, here());
    emit({Op::kConst, 0, 0, 0});
    for (uint32_t at : toEnd) patch(at, here());
  }

  const Source& src_;
  const std::unordered_map<std::string, Signature>& table_;
  Function& f_;
  std::vector<std::unordered_map<std::string, uint32_t>> scopes_;
  int depth_ = 0;
};

}  // namespace

Outcome<CompiledModule> compile(const Module& module, const Program* base) {
  CompiledModule out;
  if (base != nullptr) out.program = *base;
  std::unordered_map<std::string, Signature> table;
  for (const auto& f : out.program.functions) table[f->name] = {f->index, f->arity};
  try {
    // Declare every function first: calls may refer forward and recurse mutually.
    std::unordered_map<std::string, SourcePos> seen;
    std::vector<uint32_t> indices;
    for (const FunctionDecl& d : module.functions) {
      auto throwAt = [&](SourcePos pos, std::string m) { throw CompileError{makeDiagnostic(module.source, pos, std::move(m))}; };
      if (auto prev = seen.find(d.name); prev != seen.end()) {
        throwAt(d.pos, "function '" + d.name + "' is defined twice (first at line " + std::to_string(prev->second.line) + ")");
      }
      seen[d.name] = d.pos;
      if (d.params.size() > kMaxParams) {
        throwAt(d.pos, "function '" + d.name + "' has " + std::to_string(d.params.size()) + " parameters; at most " +
                           std::to_string(kMaxParams) + " are supported");
      }
      auto arity = static_cast<uint32_t>(d.params.size());
      if (auto existing = table.find(d.name); existing != table.end()) {
        if (existing->second.arity != arity) {
          throwAt(d.pos, "redefinition of '" + d.name + "' changes its arity from " + std::to_string(existing->second.arity) +
                             " to " + std::to_string(arity) + "; compiled callers pass " +
                             std::to_string(existing->second.arity));
        }
        indices.push_back(existing->second.index);
      } else {
        auto index = static_cast<uint32_t>(out.program.functions.size());
        out.program.functions.push_back(nullptr);
        out.program.byName[d.name] = index;
        table[d.name] = {index, arity};
        indices.push_back(index);
      }
    }
    for (size_t i = 0; i < module.functions.size(); ++i) {
      const FunctionDecl& d = module.functions[i];
      auto f = std::make_shared<Function>();
      f->name = d.name;
      f->index = indices[i];
      f->arity = static_cast<uint32_t>(d.params.size());
      f->pos = d.pos;
      f->file = module.source.name;
      const auto& previous = out.program.functions[f->index];
      f->version = previous ? previous->version + 1 : 1;
      FunctionCompiler(module.source, table, *f).compile(d);
      out.program.functions[f->index] = std::move(f);
      out.defined.push_back(indices[i]);
    }
  } catch (const CompileError& e) {
    return Outcome<CompiledModule>::fail(e.diagnostic);
  }
  return Outcome<CompiledModule>::ok(std::move(out));
}

}  // namespace tinyvm

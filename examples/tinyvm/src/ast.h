// tinyvm — syntax tree produced by the parser, consumed by the bytecode compiler.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "source.h"

namespace tinyvm {

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kMod, kLt, kLe, kGt, kGe, kEq, kNe, kAnd, kOr };
enum class UnaryOp { kNeg, kNot };

struct Expr {
  enum class Kind { kInt, kVar, kUnary, kBinary, kCall };
  Kind kind = Kind::kInt;
  SourcePos pos;
  int64_t value = 0;       // kInt
  std::string name;        // kVar, kCall
  UnaryOp unary = UnaryOp::kNeg;
  BinaryOp binary = BinaryOp::kAdd;
  std::vector<std::unique_ptr<Expr>> operands;  // unary: 1, binary: 2, call: the arguments
};

struct Stmt {
  enum class Kind { kVar, kAssign, kIf, kWhile, kReturn, kExpr, kBlock };
  Kind kind = Kind::kExpr;
  SourcePos pos;
  std::string name;                          // kVar, kAssign
  std::unique_ptr<Expr> expr;                // initializer, value, condition, return value (may be null)
  std::vector<std::unique_ptr<Stmt>> body;   // if-then, while body, block
  std::vector<std::unique_ptr<Stmt>> orElse; // if-else
};

struct Param {
  std::string name;
  SourcePos pos;
};

struct FunctionDecl {
  std::string name;
  SourcePos pos;
  std::vector<Param> params;
  std::vector<std::unique_ptr<Stmt>> body;
};

struct Module {
  Source source;
  std::vector<FunctionDecl> functions;
};

}  // namespace tinyvm

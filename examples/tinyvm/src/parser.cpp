// tinyvm — the parser.
#include "parser.h"

#include "lexer.h"

namespace tinyvm {
namespace {

constexpr int kMaxNesting = 256;  // deeper programs would only exhaust the parser's stack

// Thrown inside the parser only; parse() turns it into an Outcome.
struct SyntaxError {
  Diagnostic diagnostic;
};

class Parser {
 public:
  Parser(const Source& src, std::vector<Token> tokens) : src_(src), toks_(std::move(tokens)) {}

  Module module() {
    Module m;
    while (peek().kind != Tok::kEnd) m.functions.push_back(function());
    return m;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  const Token& next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool accept(Tok k) {
    if (peek().kind != k) return false;
    next();
    return true;
  }
  [[noreturn]] void fail(SourcePos pos, std::string message) {
    throw SyntaxError{makeDiagnostic(src_, pos, std::move(message))};
  }
  const Token& expect(Tok k, const char* context) {
    if (peek().kind != k) fail(peek().pos, "expected " + describe(k) + " " + context + ", found " + describe(peek()));
    return next();
  }

  struct Nest {  // bounds recursion depth
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting) p_.fail(p_.peek().pos, "nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~Nest() { --p_.depth_; }
    Parser& p_;
  };

  FunctionDecl function() {
    if (peek().kind != Tok::kFn) fail(peek().pos, "expected 'fn' to start a function definition, found " + describe(peek()));
    next();
    FunctionDecl f;
    const Token& name = expect(Tok::kIdent, "after 'fn'");
    f.name = name.text;
    f.pos = name.pos;
    expect(Tok::kLParen, "after the function name");
    if (peek().kind != Tok::kRParen) {
      do {
        const Token& p = expect(Tok::kIdent, "(a parameter name)");
        f.params.push_back({p.text, p.pos});
      } while (accept(Tok::kComma));
    }
    expect(Tok::kRParen, "after the parameters");
    f.body = block("to start the function body");
    return f;
  }

  std::vector<std::unique_ptr<Stmt>> block(const char* context) {
    Nest nest(*this);
    expect(Tok::kLBrace, context);
    std::vector<std::unique_ptr<Stmt>> out;
    while (peek().kind != Tok::kRBrace) {
      if (peek().kind == Tok::kEnd) fail(peek().pos, "unexpected end of file: missing '}'");
      out.push_back(statement());
    }
    next();
    return out;
  }

  std::unique_ptr<Stmt> statement() {
    auto s = std::make_unique<Stmt>();
    s->pos = peek().pos;
    switch (peek().kind) {
      case Tok::kVar:
        next();
        s->kind = Stmt::Kind::kVar;
        s->name = expect(Tok::kIdent, "after 'var'").text;
        expect(Tok::kAssign, "after the variable name (variables must be initialized)");
        s->expr = expression();
        expect(Tok::kSemicolon, "after the variable declaration");
        return s;
      case Tok::kIf:
        return ifStatement();
      case Tok::kWhile:
        next();
        s->kind = Stmt::Kind::kWhile;
        expect(Tok::kLParen, "after 'while'");
        s->expr = expression();
        expect(Tok::kRParen, "after the loop condition");
        s->body = block("to start the loop body");
        return s;
      case Tok::kReturn:
        next();
        s->kind = Stmt::Kind::kReturn;
        if (peek().kind != Tok::kSemicolon) s->expr = expression();
        expect(Tok::kSemicolon, "after the return statement");
        return s;
      case Tok::kLBrace:
        s->kind = Stmt::Kind::kBlock;
        s->body = block("");
        return s;
      case Tok::kIdent:
        if (peek(1).kind == Tok::kAssign) {
          s->kind = Stmt::Kind::kAssign;
          s->name = next().text;
          next();
          s->expr = expression();
          expect(Tok::kSemicolon, "after the assignment");
          return s;
        }
        [[fallthrough]];
      default:
        s->kind = Stmt::Kind::kExpr;
        s->expr = expression();
        expect(Tok::kSemicolon, "after the expression");
        return s;
    }
  }

  std::unique_ptr<Stmt> ifStatement() {
    auto s = std::make_unique<Stmt>();
    s->pos = next().pos;  // 'if'
    s->kind = Stmt::Kind::kIf;
    expect(Tok::kLParen, "after 'if'");
    s->expr = expression();
    expect(Tok::kRParen, "after the condition");
    s->body = block("to start the 'if' body");
    if (accept(Tok::kElse)) {
      if (peek().kind == Tok::kIf) {
        Nest nest(*this);
        s->orElse.push_back(ifStatement());
      } else {
        s->orElse = block("after 'else'");
      }
    }
    return s;
  }

  std::unique_ptr<Expr> expression() {
    Nest nest(*this);
    return binary(0);
  }

  // Precedence climbing over the levels below, lowest first.
  static int level(Tok k) {
    switch (k) {
      case Tok::kOrOr: return 0;
      case Tok::kAndAnd: return 1;
      case Tok::kEq: case Tok::kNe: return 2;
      case Tok::kLt: case Tok::kLe: case Tok::kGt: case Tok::kGe: return 3;
      case Tok::kPlus: case Tok::kMinus: return 4;
      case Tok::kStar: case Tok::kSlash: case Tok::kPercent: return 5;
      default: return -1;
    }
  }
  static BinaryOp opOf(Tok k) {
    switch (k) {
      case Tok::kOrOr: return BinaryOp::kOr;
      case Tok::kAndAnd: return BinaryOp::kAnd;
      case Tok::kEq: return BinaryOp::kEq;
      case Tok::kNe: return BinaryOp::kNe;
      case Tok::kLt: return BinaryOp::kLt;
      case Tok::kLe: return BinaryOp::kLe;
      case Tok::kGt: return BinaryOp::kGt;
      case Tok::kGe: return BinaryOp::kGe;
      case Tok::kPlus: return BinaryOp::kAdd;
      case Tok::kMinus: return BinaryOp::kSub;
      case Tok::kStar: return BinaryOp::kMul;
      case Tok::kSlash: return BinaryOp::kDiv;
      default: return BinaryOp::kMod;
    }
  }

  std::unique_ptr<Expr> binary(int minLevel) {
    if (minLevel > 5) return unary();
    std::unique_ptr<Expr> lhs = binary(minLevel + 1);
    while (level(peek().kind) == minLevel) {
      const Token& op = next();
      auto e = std::make_unique<Expr>();
      e->kind = Expr::Kind::kBinary;
      e->pos = op.pos;
      e->binary = opOf(op.kind);
      e->operands.push_back(std::move(lhs));
      e->operands.push_back(binary(minLevel + 1));
      lhs = std::move(e);
    }
    return lhs;
  }

  std::unique_ptr<Expr> unary() {
    if (peek().kind == Tok::kMinus || peek().kind == Tok::kBang) {
      Nest nest(*this);
      const Token& op = next();
      auto e = std::make_unique<Expr>();
      e->kind = Expr::Kind::kUnary;
      e->pos = op.pos;
      e->unary = op.kind == Tok::kMinus ? UnaryOp::kNeg : UnaryOp::kNot;
      e->operands.push_back(unary());
      return e;
    }
    return primary();
  }

  std::unique_ptr<Expr> primary() {
    const Token& t = peek();
    auto e = std::make_unique<Expr>();
    e->pos = t.pos;
    if (t.kind == Tok::kInt) {
      e->kind = Expr::Kind::kInt;
      e->value = next().value;
      return e;
    }
    if (t.kind == Tok::kIdent) {
      e->name = next().text;
      if (!accept(Tok::kLParen)) {
        e->kind = Expr::Kind::kVar;
        return e;
      }
      e->kind = Expr::Kind::kCall;
      if (peek().kind != Tok::kRParen) {
        do e->operands.push_back(expression());
        while (accept(Tok::kComma));
      }
      expect(Tok::kRParen, "after the call's arguments");
      return e;
    }
    if (t.kind == Tok::kLParen) {
      next();
      std::unique_ptr<Expr> inner = expression();
      expect(Tok::kRParen, "to close the parenthesis");
      return inner;
    }
    fail(t.pos, "expected an expression, found " + describe(t));
  }

  const Source& src_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Outcome<Module> parse(Source source) {
  Outcome<std::vector<Token>> tokens = lex(source);
  if (!tokens.isOk()) return Outcome<Module>::fail(tokens.error);
  try {
    Parser p(source, std::move(*tokens.value));
    Module m = p.module();
    m.source = std::move(source);
    return Outcome<Module>::ok(std::move(m));
  } catch (const SyntaxError& e) {
    return Outcome<Module>::fail(e.diagnostic);
  }
}

}  // namespace tinyvm

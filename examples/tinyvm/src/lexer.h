// tinyvm — tokens. `#` and `//` start comments; integers are decimal int64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "source.h"

namespace tinyvm {

enum class Tok {
  kEnd, kIdent, kInt,
  kFn, kVar, kIf, kElse, kWhile, kReturn,                      // keywords
  kLParen, kRParen, kLBrace, kRBrace, kComma, kSemicolon,
  kAssign, kPlus, kMinus, kStar, kSlash, kPercent, kBang,
  kLt, kLe, kGt, kGe, kEq, kNe, kAndAnd, kOrOr,
};

struct Token {
  Tok kind = Tok::kEnd;
  SourcePos pos;
  std::string text;   // identifier spelling or the literal's digits
  int64_t value = 0;  // kInt
};

// How a token reads in an error message: "')'", "identifier 'foo'", "end of file".
std::string describe(const Token& t);
std::string describe(Tok kind);

// The whole token stream, ending with kEnd; or the first lexical error.
Outcome<std::vector<Token>> lex(const Source& src);

}  // namespace tinyvm

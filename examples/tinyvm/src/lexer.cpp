// tinyvm — the lexer.
#include "lexer.h"

#include <cctype>
#include <cstdio>
#include <unordered_map>

namespace tinyvm {

std::string describe(Tok kind) {
  switch (kind) {
    case Tok::kEnd: return "end of file";
    case Tok::kIdent: return "identifier";
    case Tok::kInt: return "integer";
    case Tok::kFn: return "'fn'";
    case Tok::kVar: return "'var'";
    case Tok::kIf: return "'if'";
    case Tok::kElse: return "'else'";
    case Tok::kWhile: return "'while'";
    case Tok::kReturn: return "'return'";
    case Tok::kLParen: return "'('";
    case Tok::kRParen: return "')'";
    case Tok::kLBrace: return "'{'";
    case Tok::kRBrace: return "'}'";
    case Tok::kComma: return "','";
    case Tok::kSemicolon: return "';'";
    case Tok::kAssign: return "'='";
    case Tok::kPlus: return "'+'";
    case Tok::kMinus: return "'-'";
    case Tok::kStar: return "'*'";
    case Tok::kSlash: return "'/'";
    case Tok::kPercent: return "'%'";
    case Tok::kBang: return "'!'";
    case Tok::kLt: return "'<'";
    case Tok::kLe: return "'<='";
    case Tok::kGt: return "'>'";
    case Tok::kGe: return "'>='";
    case Tok::kEq: return "'=='";
    case Tok::kNe: return "'!='";
    case Tok::kAndAnd: return "'&&'";
    case Tok::kOrOr: return "'||'";
  }
  return "token";
}

std::string describe(const Token& t) {
  if (t.kind == Tok::kIdent) return "identifier '" + t.text + "'";
  if (t.kind == Tok::kInt) return "integer " + t.text;
  return describe(t.kind);
}

Outcome<std::vector<Token>> lex(const Source& src) {
  static const std::unordered_map<std::string, Tok> kKeywords = {
      {"fn", Tok::kFn}, {"var", Tok::kVar}, {"if", Tok::kIf}, {"else", Tok::kElse},
      {"while", Tok::kWhile}, {"return", Tok::kReturn}};
  const std::string& s = src.text;
  std::vector<Token> out;
  size_t i = 0;
  SourcePos pos;
  auto advance = [&](size_t n) {
    for (size_t k = 0; k < n && i < s.size(); ++k, ++i) {
      if (s[i] == '\n') pos.line++, pos.column = 1;
      else pos.column++;
    }
  };
  while (true) {
    // whitespace and comments
    while (i < s.size()) {
      if (std::isspace(static_cast<unsigned char>(s[i]))) {
        advance(1);
      } else if (s[i] == '#' || (s[i] == '/' && i + 1 < s.size() && s[i + 1] == '/')) {
        while (i < s.size() && s[i] != '\n') advance(1);
      } else {
        break;
      }
    }
    Token t;
    t.pos = pos;
    if (i >= s.size()) {
      out.push_back(t);
      return Outcome<std::vector<Token>>::ok(std::move(out));
    }
    char c = s[i];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      t.text = s.substr(i, j - i);
      auto kw = kKeywords.find(t.text);
      t.kind = kw != kKeywords.end() ? kw->second : Tok::kIdent;
      advance(j - i);
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      uint64_t v = 0;
      bool overflow = false;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) {
        uint64_t d = static_cast<uint64_t>(s[j] - '0');
        if (v > (static_cast<uint64_t>(INT64_MAX) - d) / 10) overflow = true;
        v = v * 10 + d;
        ++j;
      }
      if (j < s.size() && (std::isalpha(static_cast<unsigned char>(s[j])) || s[j] == '_')) {
        return Outcome<std::vector<Token>>::fail(
            makeDiagnostic(src, pos, "malformed number '" + s.substr(i, j + 1 - i) + "'"));
      }
      if (overflow) {
        return Outcome<std::vector<Token>>::fail(makeDiagnostic(
            src, pos, "integer literal " + s.substr(i, j - i) + " does not fit in 64 bits"));
      }
      t.kind = Tok::kInt;
      t.text = s.substr(i, j - i);
      t.value = static_cast<int64_t>(v);
      advance(j - i);
    } else {
      auto two = [&](char next) { return i + 1 < s.size() && s[i + 1] == next; };
      size_t len = 1;
      switch (c) {
        case '(': t.kind = Tok::kLParen; break;
        case ')': t.kind = Tok::kRParen; break;
        case '{': t.kind = Tok::kLBrace; break;
        case '}': t.kind = Tok::kRBrace; break;
        case ',': t.kind = Tok::kComma; break;
        case ';': t.kind = Tok::kSemicolon; break;
        case '+': t.kind = Tok::kPlus; break;
        case '-': t.kind = Tok::kMinus; break;
        case '*': t.kind = Tok::kStar; break;
        case '/': t.kind = Tok::kSlash; break;
        case '%': t.kind = Tok::kPercent; break;
        case '=': if (two('=')) t.kind = Tok::kEq, len = 2; else t.kind = Tok::kAssign; break;
        case '!': if (two('=')) t.kind = Tok::kNe, len = 2; else t.kind = Tok::kBang; break;
        case '<': if (two('=')) t.kind = Tok::kLe, len = 2; else t.kind = Tok::kLt; break;
        case '>': if (two('=')) t.kind = Tok::kGe, len = 2; else t.kind = Tok::kGt; break;
        case '&':
          if (!two('&')) return Outcome<std::vector<Token>>::fail(makeDiagnostic(src, pos, "expected '&&' (there is no bitwise '&')"));
          t.kind = Tok::kAndAnd, len = 2;
          break;
        case '|':
          if (!two('|')) return Outcome<std::vector<Token>>::fail(makeDiagnostic(src, pos, "expected '||' (there is no bitwise '|')"));
          t.kind = Tok::kOrOr, len = 2;
          break;
        default: {
          char shown[8];
          if (std::isprint(static_cast<unsigned char>(c))) std::snprintf(shown, sizeof shown, "%c", c);
          else std::snprintf(shown, sizeof shown, "\\x%02x", static_cast<unsigned char>(c));
          return Outcome<std::vector<Token>>::fail(makeDiagnostic(src, pos, std::string("unexpected character '") + shown + "'"));
        }
      }
      t.text = s.substr(i, len);
      advance(len);
    }
    out.push_back(std::move(t));
  }
}

}  // namespace tinyvm

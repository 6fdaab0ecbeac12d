// tinyvm — recursive-descent parser.
//
//   module  := ('fn' IDENT '(' params? ')' block)*
//   stmt    := 'var' IDENT '=' expr ';' | IDENT '=' expr ';' | 'return' expr? ';'
//            | 'if' '(' expr ')' block ('else' (block | if))? | 'while' '(' expr ')' block
//            | block | expr ';'
//   expr    := || over && over == != over < <= > >= over + - over * / % over unary - !
//   primary := INT | IDENT | IDENT '(' args? ')' | '(' expr ')'
#pragma once

#include "ast.h"
#include "source.h"

namespace tinyvm {

// The module, or the first syntax error with its line and column.
Outcome<Module> parse(Source source);

}  // namespace tinyvm

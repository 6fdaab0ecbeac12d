// tinyvm front end: every error names the file, line and column; programs compile to the
// bytecode the interpreter and JIT expect.
#include <gtest/gtest.h>

#include "compiler.h"
#include "interpreter.h"
#include "parser.h"
#include "test_util.h"

namespace tinyvm {
namespace {

struct BadProgram {
  const char* text;
  int line, column;
  const char* message;  // a substring of the diagnostic
};

const BadProgram kBadPrograms[] = {
    {"fn main() {\n  return (1 + 2;\n}\n", 2, 16, "expected ')' to close the parenthesis, found ';'"},
    {"fn main() {\n  return 1 @ 2;\n}\n", 2, 12, "unexpected character '@'"},
    {"fn main() {\n  return y;\n}\n", 2, 10, "unknown variable 'y'"},
    {"fn f(a) { return a; }\nfn main() {\n  return f(1, 2);\n}\n", 3, 10, "function 'f' takes 1 argument, 2 given"},
    {"fn main() {\n  return g(1);\n}\n", 2, 10, "unknown function 'g'"},
    {"fn main() { return 1; }\nfn main() { return 2; }\n", 2, 4, "defined twice (first at line 1)"},
    {"fn f(a, b, c, d, e, f, g) { return a; }\n", 1, 4, "at most 6 are supported"},
    {"fn main() {\n  var x = 1;\n  var x = 2;\n  return x;\n}\n", 3, 3, "already declared in this block"},
    {"fn main() {\n  return 99999999999999999999;\n}\n", 2, 10, "does not fit in 64 bits"},
    {"fn main() {\n  x = 1;\n}\n", 2, 3, "unknown variable 'x'"},
    {"fn main() {\n  return 1;\n", 3, 1, "missing '}'"},
    {"main() { }\n", 1, 1, "expected 'fn' to start a function definition"},
    {"fn main() {\n  if 1 { }\n}\n", 2, 6, "expected '(' after 'if'"},
    {"fn main() {\n  return 1 & 2;\n}\n", 2, 12, "expected '&&'"},
    {"fn f() { return 1; }\nfn main() {\n  return f;\n}\n", 3, 10, "'f' is a function, not a variable"},
    {"fn main() {\n  var 1 = 2;\n}\n", 2, 7, "expected identifier after 'var', found integer 1"},
};

TEST(TinyVmFrontend, ErrorsCarryLineAndColumn) {
  for (const BadProgram& b : kBadPrograms) {
    LoadOutcome l = loadText("bad.tvm", b.text);
    ASSERT_FALSE(l.ok) << "accepted a bad program:\n" << b.text;
    std::string where = "bad.tvm:" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": error: ";
    EXPECT_EQ(l.error.rfind(where, 0), 0u) << "expected the diagnostic to start with '" << where << "', got:\n"
                                           << l.error << "\nfor:\n" << b.text;
    EXPECT_NE(l.error.find(b.message), std::string::npos) << "expected '" << b.message << "' in:\n" << l.error;
    EXPECT_NE(l.error.find('^'), std::string::npos) << "no caret line in:\n" << l.error;
  }
}

TEST(TinyVmFrontend, FilesFromDiskReportTheirPath) {
  LoadOutcome l = loadFile(test::dataPath("missing_paren.tvm"));
  ASSERT_FALSE(l.ok);
  EXPECT_NE(l.error.find("missing_paren.tvm:3:16: error: expected ')'"), std::string::npos) << l.error;
  LoadOutcome missing = loadFile(test::dataPath("no_such_file.tvm"));
  ASSERT_FALSE(missing.ok);
  EXPECT_NE(missing.error.find("cannot read"), std::string::npos) << missing.error;
}

TEST(TinyVmFrontend, RedefinitionKeepsArityAndBumpsVersion) {
  Loaded base = test::loadSource("fn f(a) { return a; }\nfn main() { return f(1); }\n");
  Outcome<Module> patch = parse(Source{"patch.tvm", "fn f(a) { return a + 1; }\nfn g() { return 2; }\n"});
  ASSERT_TRUE(patch.isOk()) << patch.error.toString();
  Outcome<CompiledModule> merged = compile(*patch.value, &base.program);
  ASSERT_TRUE(merged.isOk()) << merged.error.toString();
  const Program& p = merged.value->program;
  ASSERT_EQ(p.functions.size(), 3u);
  EXPECT_EQ(*p.find("f"), 0u) << "a redefined function keeps its index (its key)";
  EXPECT_EQ(p.functions[0]->version, 2u);
  EXPECT_EQ(*p.find("g"), 2u) << "new functions are appended";
  EXPECT_EQ(Interpreter(p).call(*p.find("main"), {}), 2);
  EXPECT_EQ(Interpreter(base.program).call(*base.program.find("main"), {}), 1) << "the base program is unchanged";

  Outcome<Module> bad = parse(Source{"patch.tvm", "fn f(a, b) { return a; }\n"});
  ASSERT_TRUE(bad.isOk());
  Outcome<CompiledModule> rejected = compile(*bad.value, &base.program);
  ASSERT_FALSE(rejected.isOk());
  EXPECT_NE(rejected.error.toString().find("patch.tvm:1:4: error: redefinition of 'f' changes its arity from 1 to 2"),
            std::string::npos)
      << rejected.error.toString();
}

TEST(TinyVmFrontend, IntegerSemanticsNeverTrap) {
  Loaded l = test::loadSource(
      "fn div(a, b) { return a / b; }\nfn mod(a, b) { return a % b; }\n"
      "fn main() { return 0; }\n");
  Interpreter in(l.program);
  const int64_t kMin = INT64_MIN;
  EXPECT_EQ(in.call(0, std::vector<int64_t>{7, 0}), 0);
  EXPECT_EQ(in.call(1, std::vector<int64_t>{7, 0}), 0);
  EXPECT_EQ(in.call(0, std::vector<int64_t>{kMin, -1}), kMin);
  EXPECT_EQ(in.call(1, std::vector<int64_t>{kMin, -1}), 0);
  EXPECT_EQ(in.call(0, std::vector<int64_t>{-7, 2}), -3) << "division truncates toward zero";
  EXPECT_EQ(in.call(1, std::vector<int64_t>{-7, 2}), -1);
}

TEST(TinyVmFrontend, ShortCircuitSkipsTheRightHandSide) {
  // bomb() would recurse forever; && and || must not call it.
  Loaded l = test::loadSource(
      "fn bomb() { return bomb(); }\n"
      "fn main() { return (0 && bomb()) + (1 || bomb()) * 10 + (2 && 3) * 100 + (0 || 0) * 1000; }\n");
  EXPECT_EQ(Interpreter(l.program).call(*l.program.find("main"), {}), 110);
}

}  // namespace
}  // namespace tinyvm

// tinyvm JIT == interpreter: the sample programs in every JIT configuration, and a few
// hundred generated programs that stress the baseline JIT's deferred operands (constants,
// locals, the rax cache, spills around calls, fused compare-and-branch, division).
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <sstream>

#include "interpreter.h"
#include "isa.h"
#include "jit/backend.h"
#include "test_util.h"

namespace tinyvm {
namespace {

struct Config {
  const char* name;
  Tiering tiering;
  CallMode calls;
  patchcall::SiteForm form;
};

const Config kConfigs[] = {
    {"lazy/direct", Tiering::kLazy, CallMode::kSites, patchcall::SiteForm::kDirect},
    {"threshold/direct", Tiering::kThreshold, CallMode::kSites, patchcall::SiteForm::kDirect},
    {"eager/hardwired", Tiering::kEager, CallMode::kHardwired, patchcall::SiteForm::kDirect},
    {"eager/toggle", Tiering::kEager, CallMode::kSites, patchcall::SiteForm::kToggle},
    {"lazy/breakpoint", Tiering::kLazy, CallMode::kSites, patchcall::SiteForm::kBreakpoint},
};

VmOptions optionsFor(const Config& c) {
  VmOptions o;
  o.tiering = c.tiering;
  o.threshold = 3;
  o.jit.calls = c.calls;
  o.jit.siteForm = c.form;
  o.runtime.arenaSize = size_t{4} << 20;
  return o;
}

class TinyVmSamples : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyVmSamples, JitMatchesInterpreterInEveryConfiguration) {
  Loaded l = test::load(test::programPath(GetParam()));
  std::optional<uint32_t> main = l.program.find("main");
  ASSERT_TRUE(main.has_value());
  int64_t reference = Interpreter(l.program).call(*main, {});
  if (std::optional<int64_t> expected = expectedResult(l.module.source)) {
    EXPECT_EQ(reference, *expected) << "the interpreter disagrees with the program's '# expect:'";
  }
  for (const Config& c : kConfigs) {
    if (!jit::siteFormAvailable(c.form)) continue;  // aarch64: Direct sites only (TinyVmSiteForms)
    std::unique_ptr<Vm> vm = test::startVm(l.program, optionsFor(c));
    ASSERT_NE(vm, nullptr);
    auto scope = vm->attachThread("sample");
    ASSERT_TRUE(scope.isOk()) << scope.status().toString();
    patchcall::Result<int64_t> r = vm->call(*main, {});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(*r, reference) << GetParam() << " in configuration " << c.name;
    EXPECT_GT(vm->stats().compiles, 0u) << c.name << ": nothing was compiled";
  }
}

INSTANTIATE_TEST_SUITE_P(Programs, TinyVmSamples,
                         ::testing::Values("fib.tvm", "ackermann.tvm", "loops.tvm", "reload.tvm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(0, n.find('.'));
                         });

// A form the ISA lacks is refused when the VM starts, with the reason; a function whose JIT
// failed would otherwise run interpreted without a word.
TEST(TinyVmSiteForms, OnlyTheFormsOfThisIsaAreAccepted) {
  Loaded l = test::load(test::programPath("fib.tvm"));
  for (patchcall::SiteForm form : {patchcall::SiteForm::kDirect, patchcall::SiteForm::kAuto, patchcall::SiteForm::kToggle,
                                   patchcall::SiteForm::kBreakpoint}) {
    bool available = form == patchcall::SiteForm::kDirect || form == patchcall::SiteForm::kAuto ||
                     patchcall::test::hasToggleAndBreakpointForms();
    EXPECT_EQ(jit::siteFormAvailable(form), available) << static_cast<int>(form);
    VmOptions o;
    o.jit.siteForm = form;
    patchcall::Result<std::unique_ptr<Vm>> vm = Vm::create(l.program, o);
    if (available) {
      EXPECT_TRUE(vm.isOk()) << vm.status().toString();
      continue;
    }
    ASSERT_FALSE(vm.isOk()) << "form " << static_cast<int>(form) << " accepted on an ISA without it";
    EXPECT_EQ(vm.code(), patchcall::Error::kInvalidArgument);
    EXPECT_NE(vm.status().toString().find("only Direct sites"), std::string::npos) << vm.status().toString();
  }
}

// ---- generated programs --------------------------------------------------------------------

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  // f0 .. f{n-1}; fi may call fj for j < i (no recursion, so every program terminates).
  std::string program(int functions) {
    std::ostringstream out;
    for (int i = 0; i < functions; ++i) {
      fn_ = i;
      vars_ = {"a", "b"};
      frozen_.clear();
      out << "fn f" << i << "(a, b) {\n" << block(2) << "  return " << expr(3) << ";\n}\n";
    }
    return out.str();
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  std::string literal() {
    // Immediate-size edges of both ISAs: x86 imm32, A64 imm12 (4095) and 16-bit mov chunks.
    static const int64_t kEdge[] = {0, 1, -1, 2, 7, 255, 4095, 4096, 1 << 20, INT32_MAX, int64_t{INT32_MAX} + 1,
                                    INT64_MAX, -1000000007, int64_t{0x0123456789ABCDEF}, -65536};
    if (pick(4) == 0) {
      int64_t v = kEdge[pick(sizeof kEdge / sizeof kEdge[0])];
      return v < 0 ? "(0 - " + std::to_string(-(v + 1)) + " - 1)" : std::to_string(v);
    }
    return std::to_string(pick(50));
  }

  std::string expr(int depth) {
    int choice = depth <= 0 ? pick(2) : pick(9);
    switch (choice) {
      case 0: return literal();
      case 1: return vars_[static_cast<size_t>(pick(static_cast<int>(vars_.size())))];
      case 2: case 3: {
        static const char* kOps[] = {"+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!=", "&&", "||"};
        std::string lhs = expr(depth - 1);  // sequenced: the same seed gives the same program everywhere
        const char* op = kOps[pick(13)];
        return "(" + lhs + " " + op + " " + expr(depth - 1) + ")";
      }
      case 4: {
        std::string op = pick(2) ? "-" : "!";
        return op + "(" + expr(depth - 1) + ")";
      }
      case 5: {
        if (fn_ == 0) return literal();
        std::string callee = "f" + std::to_string(pick(fn_));
        std::string a = expr(depth - 1);
        return callee + "(" + a + ", " + expr(depth - 1) + ")";
      }
      default: {  // nested arithmetic keeps several operands alive at once
        std::string a = expr(depth - 1), b = expr(depth - 1);
        return "(" + a + " * " + b + " - " + expr(depth - 1) + ")";
      }
    }
  }

  std::string block(int depth) {
    std::string out;
    int n = 1 + pick(4);
    for (int i = 0; i < n; ++i) out += statement(depth);
    return out;
  }

  std::string statement(int depth) {
    switch (depth <= 0 ? pick(2) : pick(5)) {
      case 0: {
        std::string v = "v" + std::to_string(counter_++);
        std::string s = "  var " + v + " = " + expr(2) + ";\n";  // the initializer cannot see v
        vars_.push_back(v);
        return s;
      }
      case 1: {
        std::vector<std::string> assignable;
        for (const auto& v : vars_) if (!frozen_.count(v)) assignable.push_back(v);
        if (assignable.empty()) return "  " + expr(2) + ";\n";
        return "  " + assignable[static_cast<size_t>(pick(static_cast<int>(assignable.size())))] + " = " + expr(2) + ";\n";
      }
      case 2: {
        size_t mark = vars_.size();
        std::string cond = expr(2);  // before the block declares anything
        std::string s = "  if (" + cond + ") {\n" + block(depth - 1) + "  }";
        vars_.resize(mark);
        if (pick(2)) {
          s += " else {\n" + block(depth - 1) + "  }";
          vars_.resize(mark);
        }
        return s + "\n";
      }
      case 3: {  // a bounded loop (not nested): the counter is never assigned in the body
        if (depth < 2) return "  " + expr(2) + ";\n";
        std::string i = "i" + std::to_string(counter_++);
        std::string s = "  var " + i + " = 0;\n  while (" + i + " < " + std::to_string(1 + pick(3)) + ") {\n";
        vars_.push_back(i);
        frozen_.insert(i);
        size_t mark = vars_.size();
        s += block(depth - 1);
        vars_.resize(mark);
        return s + "    " + i + " = " + i + " + 1;\n  }\n";
      }
      default:
        return "  " + expr(3) + ";\n";
    }
  }

  std::mt19937 rng_;
  int fn_ = 0;
  int counter_ = 0;
  std::vector<std::string> vars_;
  std::set<std::string> frozen_;
};

// A frame beyond what one push sequence (x86, 16 slots) or one stp range (A64, 64 slots)
// zeroes, and constants of every A64 mov shape (movz, movn, movk chains).
TEST(TinyVmGenerated, LargeFramesAndWideConstants) {
  std::ostringstream text;
  text << "fn big(a, b) {\n";
  for (int i = 0; i < 150; ++i) text << "  var v" << i << " = " << (i == 0 ? "a" : "v" + std::to_string(i - 1)) << " * 3 + b;\n";
  text << "  return v149 + v75 + v0 + 81985529216486895 - 4096 + 4095 - 65536 + 4294967296 + 9223372036854775807;\n}\n";
  text << "fn main() { return big(1, 2) + big(0 - 7, 123456789) + big(0 - 9223372036854775807, 0 - 1); }\n";
  Loaded l = test::loadSource(text.str());
  std::optional<uint32_t> main = l.program.find("main");
  ASSERT_TRUE(main.has_value());
  int64_t reference = Interpreter(l.program).call(*main, {});
  for (const Config& c : {kConfigs[0], kConfigs[2]}) {
    std::unique_ptr<Vm> vm = test::startVm(l.program, optionsFor(c));
    ASSERT_NE(vm, nullptr);
    auto scope = vm->attachThread("edges");
    ASSERT_TRUE(scope.isOk());
    patchcall::Result<int64_t> r = vm->call(*main, {});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(*r, reference) << c.name;
    EXPECT_EQ(vm->stats().jitFailures, 0u) << c.name << ": the large frame must compile";
  }
}

TEST(TinyVmGenerated, JitMatchesInterpreterOnGeneratedPrograms) {
  const Config configs[] = {kConfigs[0], kConfigs[2]};  // sites via tier-up, and hard-wired
  int checked = 0;
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    Generator gen(seed);
    std::string text = gen.program(4);
    LoadOutcome l = loadText("gen.tvm", text);
    ASSERT_TRUE(l.ok) << "generator produced an invalid program (seed " << seed << "): " << l.error << "\n" << text;
    const Program& p = l.loaded.program;
    const int64_t argSets[][2] = {{0, 0}, {3, -5}, {INT64_MIN, -1}, {1000003, 7}};
    for (const Config& c : configs) {
      std::unique_ptr<Vm> vm = test::startVm(p, optionsFor(c));
      ASSERT_NE(vm, nullptr);
      auto scope = vm->attachThread("gen");
      ASSERT_TRUE(scope.isOk());
      for (uint32_t f = 0; f < p.functions.size(); ++f) {
        for (const auto& args : argSets) {
          int64_t want = Interpreter(p).call(f, args);
          patchcall::Result<int64_t> got = vm->call(f, args);
          ASSERT_TRUE(got.isOk()) << got.status().toString();
          ASSERT_EQ(*got, want) << "f" << f << "(" << args[0] << ", " << args[1] << ") in " << c.name
                                << ", seed " << seed << ":\n" << text << "\nbytecode:\n" << disassemble(*p.functions[f], p);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 150 * 2 * 4 * 4);
}

}  // namespace
}  // namespace tinyvm

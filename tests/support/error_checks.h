// Error checks shared by the tests of bad inputs, resource exhaustion and signals: the exact
// error code and its message, quiet manual-mode options, tiny JIT returners and callers.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "isa.h"
#include "patchcall/jit.h"

// The status has `error` and its message contains `text` (both printed on failure).
#define EXPECT_STATUS(status, error, text)                                                  \
  do {                                                                                      \
    ::patchcall::Status s_ = (status);                                                      \
    EXPECT_EQ(s_.code(), error) << s_.toString();                                           \
    EXPECT_NE(s_.message().find(text), std::string::npos) << "message lacks '" << (text)    \
                                                          << "': " << s_.toString();        \
  } while (0)

namespace patchcall::checks {

inline Status statusOf(const Status& s) { return s; }
template <typename T>
Status statusOf(const Result<T>& r) {
  return r.status();
}

// Asserts the exact error code and a non-empty message, for a Status or a Result<T>.
#define EXPECT_ERROR(expr, error)                                           \
  do {                                                                                \
    auto&& result_ = (expr);                                                          \
    ::patchcall::Status status_ = ::patchcall::checks::statusOf(result_);          \
    EXPECT_EQ(status_.code(), error) << #expr ": " << status_.toString();             \
    if (!status_.isOk()) {                                                            \
      EXPECT_FALSE(status_.message().empty()) << #expr ": empty message";             \
    }                                                                                 \
  } while (0)

// Options for a runtime without a background thread and without stderr diagnostics.
inline Options quietManualOptions() {
  Options o;
  o.backgroundReclaimer = false;
  o.diagnosticSink = [](const std::string&) {};
  return o;
}

// `result = value ; ret` installed in the arena.
inline Result<Blob> installReturner(Runtime& rt, int value) {
  jit::Assembler a(rt);
  test::emitSetResult(a, value);
  test::emitRet(a);
  return jit::install(a);
}

// `enter ; call <key> (form) ; leave ; ret`.
inline Result<Blob> installCaller(Runtime& rt, Key key, SiteForm form = SiteForm::kDirect) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  PATCHCALL_TRY(jit::emitCall(a, key, form));
  test::emitLeave(a);
  test::emitRet(a);
  return jit::install(a);
}

// Two distinct C++ targets (noinline: each has its own address, shared by every test file).
__attribute__((noinline)) inline int cxxOne() { return 1; }
__attribute__((noinline)) inline int cxxTwo() { return 2; }
inline const void* fnOne() { return reinterpret_cast<const void*>(&cxxOne); }
inline const void* fnTwo() { return reinterpret_cast<const void*>(&cxxTwo); }

inline int callInt(const void* code) { return reinterpret_cast<int (*)()>(const_cast<void*>(code))(); }

}  // namespace patchcall::checks

// tinyvm — source text, positions and diagnostics ("file:line:col: error: ...").
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace tinyvm {

struct SourcePos {
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

struct Source {
  std::string name;  // file name shown in diagnostics
  std::string text;
};

// One error, with enough context to print the offending line and a caret under the column.
struct Diagnostic {
  std::string file;
  SourcePos pos;
  std::string message;
  std::string lineText;  // the source line, when known
  bool showLine = false;  // print lineText and a caret (the line may be empty, e.g. at EOF)

  // "fib.tvm:3:7: error: expected ')'" followed by the line and a caret.
  std::string toString() const;
};

Diagnostic makeDiagnostic(const Source& src, SourcePos pos, std::string message);

// A value or the first error found (front ends stop at the first error).
template <typename T>
struct Outcome {
  std::optional<T> value;
  Diagnostic error;

  static Outcome ok(T v) { return Outcome{std::move(v), {}}; }
  static Outcome fail(Diagnostic d) { return Outcome{std::nullopt, std::move(d)}; }
  bool isOk() const { return value.has_value(); }
};

// Reads a whole file; nullopt (and errno set) when it cannot be read.
std::optional<Source> readSource(const std::string& path);

}  // namespace tinyvm

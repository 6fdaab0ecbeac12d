// tinyvm — loading programs.
#include "loader.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "compiler.h"
#include "parser.h"

namespace tinyvm {

LoadOutcome loadText(const std::string& name, const std::string& text, const Program* base) {
  LoadOutcome out;
  Outcome<Module> parsed = parse(Source{name, text});
  if (!parsed.isOk()) {
    out.error = parsed.error.toString();
    return out;
  }
  Outcome<CompiledModule> compiled = compile(*parsed.value, base);
  if (!compiled.isOk()) {
    out.error = compiled.error.toString();
    return out;
  }
  out.ok = true;
  out.loaded.module = std::move(*parsed.value);
  out.loaded.program = std::move(compiled.value->program);
  return out;
}

LoadOutcome loadFile(const std::string& path, const Program* base) {
  std::optional<Source> src = readSource(path);
  if (!src) {
    LoadOutcome out;
    out.error = "cannot read " + path + ": " + std::strerror(errno);
    return out;
  }
  return loadText(src->name, src->text, base);
}

LoadOutcome parseFile(const std::string& path) {
  LoadOutcome out;
  std::optional<Source> src = readSource(path);
  if (!src) {
    out.error = "cannot read " + path + ": " + std::strerror(errno);
    return out;
  }
  Outcome<Module> parsed = parse(std::move(*src));
  if (!parsed.isOk()) {
    out.error = parsed.error.toString();
    return out;
  }
  out.ok = true;
  out.loaded.module = std::move(*parsed.value);
  return out;
}

std::optional<int64_t> expectedResult(const Source& src) {
  size_t at = src.text.find("# expect:");
  if (at == std::string::npos) return std::nullopt;
  const char* p = src.text.c_str() + at + 9;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(p, &end, 10);
  if (end == p || errno != 0) return std::nullopt;
  return static_cast<int64_t>(v);
}

}  // namespace tinyvm

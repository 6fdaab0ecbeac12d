// tinyvm — diagnostics and file reading.
#include "source.h"

#include <fstream>
#include <sstream>

namespace tinyvm {

std::string Diagnostic::toString() const {
  std::string out = file + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) +
                    ": error: " + message;
  if (showLine) {
    out += "\n  " + lineText + "\n  ";
    for (int i = 1; i < pos.column; ++i) out += lineText[static_cast<size_t>(i - 1)] == '\t' ? '\t' : ' ';
    out += "^";
  }
  return out;
}

Diagnostic makeDiagnostic(const Source& src, SourcePos pos, std::string message) {
  Diagnostic d{src.name, pos, std::move(message), {}};
  size_t start = 0;
  for (int line = 1; line < pos.line && start != std::string::npos; ++line) {
    start = src.text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start != std::string::npos && start <= src.text.size()) {
    size_t end = src.text.find('\n', start);
    d.lineText = src.text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    d.showLine = static_cast<size_t>(pos.column) <= d.lineText.size() + 1;
    if (!d.showLine) d.lineText.clear();
  }
  return d;
}

std::optional<Source> readSource(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return Source{path, text.str()};
}

}  // namespace tinyvm

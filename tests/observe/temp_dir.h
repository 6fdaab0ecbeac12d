// observe tests — a fresh directory under /tmp, removed with everything in it at scope exit.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace observe_test {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/patchcall-observe-XXXXXX";
    const char* d = mkdtemp(tmpl);
    path_ = d != nullptr ? d : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  operator const std::string&() const { return path_; }  // NOLINT: used where a path is
  std::string operator+(const char* tail) const { return path_ + tail; }

 private:
  std::string path_;
};

}  // namespace observe_test

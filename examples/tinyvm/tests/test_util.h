// tinyvm tests — loading programs and starting VMs with useful failure messages.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "loader.h"
#include "vm.h"

namespace tinyvm::test {

inline std::string programPath(const std::string& name) { return std::string(TINYVM_PROGRAMS_DIR) + "/" + name; }
inline std::string dataPath(const std::string& name) { return std::string(TINYVM_TEST_DATA_DIR) + "/" + name; }

// Loads or fails the test with the diagnostic.
inline Loaded load(const std::string& path) {
  LoadOutcome l = loadFile(path);
  EXPECT_TRUE(l.ok) << l.error;
  return std::move(l.loaded);
}
inline Loaded loadSource(const std::string& text) {
  LoadOutcome l = loadText("test.tvm", text);
  EXPECT_TRUE(l.ok) << l.error << "\nin:\n" << text;
  return std::move(l.loaded);
}

inline std::unique_ptr<Vm> startVm(const Program& p, VmOptions o = {}) {
  patchcall::Result<std::unique_ptr<Vm>> vm = Vm::create(p, std::move(o));
  EXPECT_TRUE(vm.isOk()) << vm.status().toString();
  return vm.isOk() ? std::move(*vm) : nullptr;
}

inline std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

}  // namespace tinyvm::test

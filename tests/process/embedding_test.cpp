// patchcall is a guest in someone else's process: it must not change the process's malloc.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "patchcall/runtime.h"

namespace {

std::string libraryDefining(const char* symbol) {
  void* p = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info{};
  if (p == nullptr || dladdr(p, &info) == 0 || info.dli_fname == nullptr) return "<unresolved>";
  return info.dli_fname;
}

TEST(Embedding, ProcessMallocIsNotReplacedByMimalloc) {
  // Create a runtime and use its metadata allocator (mimalloc, loaded with RTLD_LOCAL).
  patchcall::Result<patchcall::Runtime> rt = patchcall::Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  ASSERT_TRUE(rt->createKey(reinterpret_cast<const void*>(&libraryDefining), "metadata").isOk());
  for (const char* symbol : {"malloc", "free", "_Znwm"}) {
    std::string lib = libraryDefining(symbol);
    EXPECT_EQ(lib.find("mimalloc"), std::string::npos)
        << symbol << " resolves to " << lib << ": linking patchcall replaced the embedding process's allocator";
  }
  // mimalloc is in the process nonetheless (loaded privately for the runtime's metadata).
  void* mi = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(mi, nullptr) << "libmimalloc.so.2 is not loaded: metadata fell back to libc";
  if (mi != nullptr) dlclose(mi);
}

}  // namespace

// patchcall — where metadata memory comes from: mimalloc, loaded privately.
//
// Debian's libmimalloc.so is built with MI_OVERRIDE: linked normally it would interpose
// malloc/free/operator new for the whole embedding process (and its operator new aborts on
// exhaustion instead of throwing). patchcall is a guest in someone else's runtime, so it
// loads mimalloc with RTLD_LOCAL -- its symbols never enter the global scope -- and calls
// mi_malloc_aligned/mi_free through pointers. Without the library it falls back to libc.
#include "metadata.h"

#include <dlfcn.h>

#include <cstdlib>

namespace patchcall::detail {
namespace {

struct Allocator {
  void* (*mallocAligned)(size_t size, size_t alignment) = nullptr;
  void (*free)(void* p) = nullptr;
  bool mimalloc = false;
};

void* libcAligned(size_t size, size_t alignment) {
  void* p = nullptr;
  return posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) == 0 ? p : nullptr;
}

Allocator load() {
  Allocator a{&libcAligned, &std::free, false};
  if (void* lib = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL)) {
    void* m = dlsym(lib, "mi_malloc_aligned");
    void* f = dlsym(lib, "mi_free");
    if (m != nullptr && f != nullptr) {
      a.mallocAligned = reinterpret_cast<void* (*)(size_t, size_t)>(m);
      a.free = reinterpret_cast<void (*)(void*)>(f);
      a.mimalloc = true;
    }
  }
  return a;
}

const Allocator& allocator() {
  static const Allocator a = load();
  return a;
}

}  // namespace

void* metadataAllocate(size_t size, size_t alignment) noexcept { return allocator().mallocAligned(size, alignment); }
void metadataFree(void* p) noexcept { allocator().free(p); }
bool metadataUsesMimalloc() noexcept { return allocator().mimalloc; }

}  // namespace patchcall::detail

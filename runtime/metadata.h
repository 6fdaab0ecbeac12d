// patchcall — containers for the runtime's own metadata, allocated with mimalloc.
#pragma once

#include <cstdint>
#include <map>
#include <new>
#include <mimalloc.h>
#include <string>
#include <unordered_map>
#include <vector>

#include "patchcall/status.h"

namespace patchcall::detail {

// mimalloc-backed allocator that reports exhaustion as std::bad_alloc. (Debian's mimalloc
// is built as C, so mi_stl_allocator aborts on exhaustion instead.) The exception never
// leaves the library: every public entry point converts it to Error::kOutOfMemory.
template <typename T>
struct MiAllocator {
  using value_type = T;
  MiAllocator() noexcept = default;
  template <typename U>
  MiAllocator(const MiAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit by design
  T* allocate(size_t n) {
    void* p = n > SIZE_MAX / sizeof(T) ? nullptr : mi_malloc_aligned(n * sizeof(T), alignof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { mi_free(p); }
  template <typename U>
  bool operator==(const MiAllocator<U>&) const noexcept { return true; }
};

template <typename T>
using MiVector = std::vector<T, MiAllocator<T>>;

template <typename K, typename V>
using MiMap = std::map<K, V, std::less<K>, MiAllocator<std::pair<const K, V>>>;

template <typename K, typename V>
using MiHashMap = std::unordered_map<K, V, std::hash<K>, std::equal_to<K>, MiAllocator<std::pair<const K, V>>>;

using MiString = std::basic_string<char, std::char_traits<char>, MiAllocator<char>>;

// Runs `body` and turns a metadata allocation failure into Error::kOutOfMemory.
template <typename F>
auto catchOutOfMemory(const char* what, F&& body) noexcept -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Status(Error::kOutOfMemory, std::string(what) + ": metadata allocation failed (out of memory)");
  }
}

}  // namespace patchcall::detail

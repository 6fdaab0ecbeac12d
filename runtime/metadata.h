// patchcall — containers for the runtime's own metadata, allocated with mimalloc.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "patchcall/status.h"

namespace patchcall::detail {

// Metadata memory: mimalloc loaded privately (see metadata.cpp), libc as a fallback.
void* metadataAllocate(size_t size, size_t alignment) noexcept;
void metadataFree(void* p) noexcept;
bool metadataUsesMimalloc() noexcept;

// Allocator that reports exhaustion as std::bad_alloc. (mimalloc's own STL allocator aborts
// on exhaustion in Debian's C build.) The exception never leaves the library: every public
// entry point converts it to Error::kOutOfMemory.
template <typename T>
struct MiAllocator {
  using value_type = T;
  MiAllocator() noexcept = default;
  template <typename U>
  MiAllocator(const MiAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit by design
  T* allocate(size_t n) {
    void* p = n > SIZE_MAX / sizeof(T) ? nullptr : metadataAllocate(n * sizeof(T), alignof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { metadataFree(p); }
  template <typename U>
  bool operator==(const MiAllocator<U>&) const noexcept { return true; }
};

template <typename T>
using MiVector = std::vector<T, MiAllocator<T>>;

template <typename T>
using MiDeque = std::deque<T, MiAllocator<T>>;

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
    try {
      return Status(Error::kOutOfMemory, std::string(what) + ": metadata allocation failed (out of memory)");
    } catch (const std::bad_alloc&) {
      return Status(Error::kOutOfMemory, std::string());  // not even the message fits: the code alone
    }
  }
}

}  // namespace patchcall::detail

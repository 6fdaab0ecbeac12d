// patchcall — containers for the runtime's own metadata, allocated with mimalloc.
#pragma once

#include <map>
#include <mimalloc.h>
#include <string>
#include <unordered_map>
#include <vector>

namespace patchcall::detail {

template <typename T>
using MiVector = std::vector<T, mi_stl_allocator<T>>;

template <typename K, typename V>
using MiMap = std::map<K, V, std::less<K>, mi_stl_allocator<std::pair<const K, V>>>;

template <typename K, typename V>
using MiHashMap =
    std::unordered_map<K, V, std::hash<K>, std::equal_to<K>, mi_stl_allocator<std::pair<const K, V>>>;

using MiString = std::basic_string<char, std::char_traits<char>, mi_stl_allocator<char>>;

}  // namespace patchcall::detail

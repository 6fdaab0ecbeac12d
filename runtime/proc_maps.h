// patchcall — this process's mappings, read from /proc/self/maps.
//
// Used to place the arena near the executable's text and to check that a foreign site lies
// in executable memory. A snapshot: another thread may map or unmap right after it is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace patchcall::detail {

struct Mapping {
  uintptr_t begin = 0, end = 0;
  char perms[5] = {};  // as in /proc/self/maps: "r-xp", "rw-s", ...
  std::string path;
  bool exec() const noexcept { return perms[2] == 'x'; }
};

// Sorted by address (the kernel's order); empty if /proc/self/maps cannot be read.
std::vector<Mapping> readMaps();

// The mappings that cover [begin, end), in order, or an empty vector when any byte of it is
// unmapped.
std::vector<Mapping> mappingsCovering(const std::vector<Mapping>& maps, uintptr_t begin, uintptr_t end);

}  // namespace patchcall::detail

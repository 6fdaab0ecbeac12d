// patchcall — /proc/self/maps parsing.
#include "proc_maps.h"

#include <cstdio>
#include <cstring>

namespace patchcall::detail {

std::vector<Mapping> readMaps() {
  std::vector<Mapping> maps;
  FILE* f = std::fopen("/proc/self/maps", "re");
  if (f == nullptr) return maps;
  char line[4096];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long b = 0, e = 0;
    char perms[8] = {};
    int pathStart = 0;
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &b, &e, perms, &pathStart) < 3) continue;
    Mapping m;
    m.begin = b;
    m.end = e;
    std::memcpy(m.perms, perms, 4);
    m.path = pathStart > 0 ? std::string(line + pathStart) : std::string();
    while (!m.path.empty() && (m.path.back() == '\n' || m.path.back() == ' ')) m.path.pop_back();
    maps.push_back(std::move(m));
  }
  std::fclose(f);
  return maps;
}

std::vector<Mapping> mappingsCovering(const std::vector<Mapping>& maps, uintptr_t begin, uintptr_t end) {
  std::vector<Mapping> out;
  uintptr_t at = begin;
  for (const Mapping& m : maps) {
    if (m.end <= at) continue;
    if (m.begin > at) break;  // a hole
    out.push_back(m);
    at = m.end;
    if (at >= end) return out;
  }
  return {};
}

}  // namespace patchcall::detail

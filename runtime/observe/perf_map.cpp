// patchcall — PerfMap (see perf_map.h).
#include "perf_map.h"

#include <unistd.h>

#include <cstdio>

namespace patchcall::observe {

Status PerfMap::open(std::string directory, bool truncate) {
  directory_ = std::move(directory);
  return file_.open(directory_ + "/perf-" + std::to_string(::getpid()) + ".map", "perf map", false, truncate);
}

Status PerfMap::codeLoaded(const CodeEvent& event) {
  if (!file_.enabled()) return Status::ok();
  char head[48];
  const int n = std::snprintf(head, sizeof head, "%lx %lx ", static_cast<unsigned long>(event.start),
                              static_cast<unsigned long>(event.size));
  std::string line(head, static_cast<size_t>(n));
  for (char c : displayName(event.name, event.start)) line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? '?' : c;
  line += '\n';
  return file_.write(line.data(), line.size());
}

Status PerfMap::afterForkInChild(pid_t parent, std::span<const CodeEvent> live, bool truncate) {
  if (!file_.isOpen()) return Status::ok();  // never opened, or disabled by a failure
  file_.closeInherited(parent);
  PATCHCALL_TRY(open(directory_, truncate));
  for (const CodeEvent& e : live) PATCHCALL_TRY(codeLoaded(e));
  return Status::ok();
}

}  // namespace patchcall::observe
